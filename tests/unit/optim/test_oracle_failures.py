"""Objectives that misbehave: non-finite scores are failures, a run without solutions fails
with advice, and an interrupted run keeps what it scored."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from molvae.config import from_dict
from molvae.optim.auc import auc_every_call
from molvae.optim.objective_spec import parse_objective
from molvae.optim.oracle import Oracle

HERE = "tests.unit.optim.test_oracle_failures"
CALLS = {"n": 0}


def infinite_for_nitrogen(smiles: str) -> float:
    """+inf for molecules with a nitrogen, -inf with an oxygen, 1 otherwise."""
    return math.inf if "N" in smiles else -math.inf if "O" in smiles else 1.0


def always_infinite(smiles: str) -> float:
    return math.inf


def exits_on_fourth_call(smiles: str) -> float:
    CALLS["n"] += 1
    if CALLS["n"] > 3:
        raise SystemExit("objective gave up")
    return float(len(smiles))


def strict_json(path: Path) -> dict:
    """Parse JSON rejecting NaN/Infinity, as jq or JavaScript would."""
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


def test_non_finite_scores_are_failures_with_a_reason() -> None:
    oracle = Oracle(parse_objective(f"{HERE}:infinite_for_nitrogen"), budget=10)
    fitness = oracle.query(["CCN", "CCO", "CCC"])
    assert math.isnan(fitness[0]) and math.isnan(fitness[1]) and fitness[2] == 1.0
    table = oracle.table()
    failed = table[table["score"].isna()]
    assert failed["score_failure"].str.contains("non-finite").all() and len(failed) == 2
    assert oracle.best_trace[-1] == 1.0
    assert math.isfinite(auc_every_call(oracle.top_trace, oracle.budget))


def run(tiny_model: Path, prepared_dir: Path, tmp_path: Path, **options: object):
    from molvae.stages.optimize import OptimizeConfig, run

    return run(from_dict(OptimizeConfig, {
        "model": str(tiny_model), "data": str(prepared_dir), "out": str(tmp_path / "out"),
        "method": "random", "budget": 10, "batch_size": 4, "patience": 3, "device": "cpu",
        "grid_size": 0, **options}))


def test_a_run_without_solutions_fails_with_advice_unless_allowed(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="always_infinite' failed on all .*allow_degenerate"):
        run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:always_infinite")
    result = run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:always_infinite",
                 allow_degenerate=True)
    summary = strict_json(tmp_path / "out" / "summary.json")
    assert summary["top1"] is None and summary["auc_top10"] == 0.0
    assert summary["n_nonfinite_scores"] == summary["n_calls"] == result.metrics["n_calls"] > 0
    assert summary["budget"] == 10 and summary["config"]["budget"] == 10
    assert summary["config"]["allow_degenerate"] is True
    assert summary["config"]["max_ring_size"] == 8 and summary["config"]["max_sa"] is None


def test_no_solution_trace_plot_says_so(tmp_path: Path) -> None:
    from molvae import plots

    trace = pd.DataFrame({"oracle_calls": [1, 2], "best": [math.nan] * 2,
                          "top10_mean": [math.nan] * 2})
    figure_texts: list[str] = []
    original = plots.save_figure

    def capture(figure, path):
        figure_texts.extend(t.get_text() for ax in figure.axes for t in ax.texts)
        return original(figure, path)

    plots.save_figure = capture
    try:
        plots.optimization_trace(trace, "t", tmp_path / "trace.png")
    finally:
        plots.save_figure = original
    assert any("no solution found" in text for text in figure_texts)
    assert (tmp_path / "trace.png").stat().st_size > 0


def test_an_interrupted_run_keeps_what_it_scored(tiny_model: Path, prepared_dir: Path,
                                                 tmp_path: Path) -> None:
    CALLS["n"] = 0
    with pytest.raises(SystemExit):
        run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:exits_on_fourth_call")
    out = tmp_path / "out"
    calls = pd.read_csv(out / "calls.csv")
    assert calls["oracle_call"].tolist() == [1, 2, 3]
    assert len(pd.read_csv(out / "candidates.csv")) == 3
    summary = strict_json(out / "summary.json")
    assert summary["stop_reason"] == "interrupted" and summary["n_calls"] == 3
