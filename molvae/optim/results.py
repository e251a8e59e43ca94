"""What an optimization run leaves behind: the ranked candidates, the trace, the headline
numbers (top-k, the area under the top-10 curve read at every call) and their pictures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from molvae import plots
from molvae.io import write_json, write_table
from molvae.optim.auc import TOP_K, auc_every_call
from molvae.optim.oracle import Oracle


def _top_mean(scores: pd.Series, k: int) -> float:
    return float(scores.head(k).mean()) if len(scores) else math.nan


def summarize(method: str, oracle: Oracle, table: pd.DataFrame,
              start_record: dict[str, Any] | None, seconds: float, stop: str) -> dict[str, Any]:
    """Headline numbers: top-k of the solutions, the AUC of the top-10 curve (read at every
    call, :func:`~molvae.optim.auc.auc_every_call`), counts, the improvement."""
    solutions = table.loc[table["solution"], "score"] if len(table) else pd.Series(dtype=float)
    metrics: dict[str, Any] = {
        "method": method, "objective": oracle.objective.name, "budget": oracle.budget,
        "n_calls": oracle.calls, "stop_reason": stop, "wall_seconds": seconds,
        "top1": _top_mean(solutions, 1), "top3_mean": _top_mean(solutions, 3),
        "top10_mean": _top_mean(solutions, TOP_K),
        "auc_top10": auc_every_call(oracle.top_trace, oracle.budget),
        "n_solutions": int(len(solutions)),
        "n_pass_filters": int(table["passes_filters"].sum()) if len(table) else 0,
        "n_nan_scores": int(table["score"].isna().sum()) if len(table) else 0,
        "n_nonfinite_scores": int(table["score_failure"].str.contains("non-finite").sum())
        if len(table) else 0,
        "n_reused_calls": oracle.reused,
        "first_score_failure": next((r["score_failure"] for r in oracle.records.values()
                                     if r["score_failure"]), None),
    }
    if "novel" in table:
        metrics["novel_top10_fraction"] = float(table.loc[table["solution"], "novel"]
                                                .head(TOP_K).mean()) if len(solutions) else 0.0
    if start_record is not None:
        metrics["n_feasible"] = int(table["feasible"].sum()) if len(table) else 0
        metrics["start_score"] = start_record["score"]
        metrics["improvement"] = metrics["top1"] - start_record["score"] \
            if len(solutions) else math.nan
        metrics["improved"] = bool(metrics["improvement"] > 0) if len(solutions) else False
    return metrics


def _draw_grid(table: pd.DataFrame, size: int, path: Path) -> None:
    """The best ``size`` solutions drawn by RDKit, each with its score."""
    top = table[table["solution"]].head(size)
    if len(top):
        plots.molecule_grid(top["smiles"].tolist(), [f"{s:.3f}" for s in top["score"]], path)


OUTPUT_FILES = ("candidates.csv", "trace.csv", "trace.png", "grid.png", "summary.json")


def write_outputs(out: Path, config: dict[str, Any], table: pd.DataFrame, trace: pd.DataFrame,
                  metrics: dict[str, Any], start_record: dict[str, Any] | None,
                  grid_size: int) -> list[Path]:
    """candidates.csv, trace.csv, trace.png, summary.json (and grid.png) in ``out``."""
    write_table(table, out / "candidates.csv")
    write_table(trace, out / "trace.csv")
    plots.optimization_trace(trace, f"{metrics['method']}: {metrics['objective']}",
                             out / "trace.png")
    if grid_size and len(table):
        _draw_grid(table, grid_size, out / "grid.png")
    write_json(_strict_json({**metrics, "config": config, "start": start_record}),
               out / "summary.json")
    return [out / name for name in OUTPUT_FILES if (out / name).is_file()]


def _strict_json(value: Any) -> Any:
    """NaN and inf become null: Python would write them as NaN/Infinity, which strict JSON
    readers (jq, JavaScript, most languages) reject."""
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def finish(out: Path | None, config: dict[str, Any], oracle: Oracle,
           train: pd.DataFrame | None, start_record: dict[str, Any] | None, seconds: float,
           stop: str, grid_size: int) -> tuple[dict[str, Any], pd.DataFrame, list[Path]]:
    """Rank, summarize and write (to ``out``, unless None) everything the oracle has scored;
    returns the metrics, the trace and the files written. Also called on an interrupted run,
    so nothing paid for is lost."""
    table, trace = finish_table(oracle.table(), train), oracle.trace()
    metrics = summarize(config["method"], oracle, table, start_record, seconds, stop)
    if out is None:
        return metrics, trace, []
    return metrics, trace, write_outputs(out, config, table, trace, metrics, start_record,
                                         grid_size)


def degenerate_advice(metrics: dict[str, Any]) -> str | None:
    """Why a finished run is useless and what to change (None when it found solutions)."""
    if metrics["n_solutions"]:
        return None
    if metrics["n_calls"] and metrics["n_nan_scores"] == metrics["n_calls"]:
        return (f"the objective failed on all {metrics['n_calls']} molecules scored (first: "
                f"{metrics['first_score_failure']}): fix the objective; set allow_degenerate "
                "to keep such a run")
    return (f"optimization found no solution in {metrics['n_calls']} of {metrics['budget']} "
            f"oracle calls (stopped: {metrics['stop_reason']}; {metrics['n_nan_scores']} "
            f"scores NaN, {metrics['n_pass_filters']} passed the guards): the model may have "
            "collapsed (check train's active units; lower beta_max, more free bits or train "
            "longer), or the guards or objective reject everything (loosen max_ring_size, "
            "pains, max_sa; check the objective); set allow_degenerate to keep such a run")


def finish_table(table: pd.DataFrame, train: pd.DataFrame | None) -> pd.DataFrame:
    """Novelty against the training set, and the columns people read first, first."""
    if train is not None and len(table):
        table["novel"] = ~table["smiles"].isin(set(train["smiles"]))
    first = ["smiles", "score", "solution", "passes_filters", "filter_failures", "similarity",
             "feasible", "novel", "oracle_call", "method"]
    return table[[c for c in first if c in table] + [c for c in table if c not in first]]
