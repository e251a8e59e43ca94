"""`molvae optimize` end to end: flags → config → stage → files and an MLflow run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from molvae.cli import main


def test_optimize_writes_ranked_candidates_and_records_a_run(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path,
        mlflow_runs: Callable[[str | None], pd.DataFrame],
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "opt"
    code = main(["optimize", "--model", str(tiny_model), "--objective", "qed", "--budget", "16",
                 "--method", "cmaes", "--batch-size", "8", "--init-size", "8", "--patience", "3",
                 "--data", str(prepared_dir), "--out", str(out), "--seed", "1", "-q"])
    assert code == 0
    assert "oracle calls" in capsys.readouterr().out
    table = pd.read_csv(out / "candidates.csv")
    assert 0 < len(table) <= 16
    solutions = table[table["solution"]]
    assert solutions["score"].is_monotonic_decreasing  # ranked, solutions first
    assert table["solution"].tolist() == sorted(table["solution"], reverse=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_calls"] == len(table) and summary["method"] == "cmaes"
    runs = mlflow_runs("optimize")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["metrics.n_calls"] == len(table)
    assert run["params.objective"] == "qed"
    import mlflow

    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"])}
    assert {"candidates.csv", "summary.json", "trace.png"} <= artifacts


def test_bad_objective_is_a_clear_cli_error(tiny_model: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["optimize", "--model", str(tiny_model), "--objective", "mw_range:400:300",
                 "--out", str(tmp_path / "x"), "--no-track"])
    assert code == 2
    assert "low <= high" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
