"""``molvae regress`` from the command line, with its MLflow run and its latent cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from molvae.cli import main
from tests.unit.latent.test_latent import one_thread

REGRESS_FLAGS = ["--cv-folds", "2", "--regressors", "ridge", "hgb", "--hgb-max-iter", "5",
                 "--surrogate-epochs", "3", "--surrogate-hidden", "8", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True, scope="module")
def _single_threaded() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture
def model_dir(prepared_dir: Path, mlflow_store: str) -> Path:
    """A tiny model trained for one epoch through ``molvae train`` (quality is not the point)."""
    assert main(["train", "--data", str(prepared_dir), "--out", "model", "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "32", "--eval-samples", "0",
                 "--eval-molecules", "0", "--device", "cpu", "--no-track", "--allow-degenerate",
                 "-q"]) == 0
    return Path("model")


def test_regress_cli_end_to_end(model_dir: Path, prepared_dir: Path, mlflow_runs) -> None:
    args = ["regress", "--model", str(model_dir), "--data", str(prepared_dir), "--out", "reg",
            "--properties", "heavy_atoms,mw", *REGRESS_FLAGS]
    assert main(args) == 0
    out = Path("reg")
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == {"heavy_atoms", "mw"}
    assert set(scores["mw"]) == {"ridge", "hgb", "surrogate"}
    for name in ("regressors/mw.skops", "regressors/mw.json", "surrogates/mw.pt",
                 "plots/mw_pred_vs_true.png", "plots/latent_pca.png", "scores.csv"):
        assert (out / name).is_file(), name

    runs = mlflow_runs("regress")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["params.properties"] == str(["heavy_atoms", "mw"])
    assert run["metrics.mw/ridge/r2"] == pytest.approx(scores["mw"]["ridge"]["r2"])
    assert run["metrics.heavy_atoms/hgb/cv_r2_mean"] == pytest.approx(
        scores["heavy_atoms"]["hgb"]["cv_r2_mean"])
    artifacts = Path(run["artifact_uri"].removeprefix("file://"))
    for name in ("scores.json", "regressors/heavy_atoms.skops", "surrogates/mw.pt",
                 "plots/latent_pca.png"):
        assert (artifacts / name).is_file(), name

    cached = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.npy")}
    assert len(cached) == 3  # train, val, test
    assert main([*args[:7], "--properties", "qed", *REGRESS_FLAGS, "--no-track"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.npy")} == cached
    assert set(json.loads((out / "scores.json").read_text())) == {"qed"}


def test_regress_cli_errors_name_the_problem(model_dir: Path, prepared_dir: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    base = ["regress", "--model", str(model_dir), "--data", str(prepared_dir), "--out", "reg",
            "--no-track", "-q"]
    assert main([*base, "--properties", "activity"]) == 2
    assert "property 'activity' is not a column" in capsys.readouterr().err
    assert main([*base, "--regressors", "svm"]) == 2
    assert "regressors: unknown ['svm']" in capsys.readouterr().err
    assert main([*base[:2], "nowhere", *base[3:]]) == 2
    assert "nowhere" in capsys.readouterr().err
