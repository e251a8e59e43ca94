"""What ``benchmarks/pmo.py`` reports from its runs: the summary table, the per-task table
beside the published methods, and the top-10-versus-calls figure.

Why a module of its own: the runs take hours and the report is read many times; the same
functions redraw it from a saved ``--out`` CSV (``python benchmarks/pmo_report.py pmo.csv``)
without running anything again.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from molvae.optim.auc import top_k_mean
from molvae.plots import save_figure

SCREENING = "screening"
PUBLISHED = Path(__file__).with_name("pmo_published.csv")
PUBLISHED_BUDGET = 10_000  # the published rows are AUCs at this budget
CURVE_EVERY = 100  # PMO reads the top-10 mean every 100 calls
CURVE_COLUMNS = ["task", "method", "seed", "budget", "calls", "top10"]


def summarize(results: pd.DataFrame, methods: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """Per task, each method's AUC (mean over seeds), the sums and the ratios to screening."""
    auc = results.pivot_table(index="task", columns="method", values="pmo_auc_top10",
                              aggfunc="mean")
    wall = results.pivot_table(index="task", columns="method", values="wall_seconds",
                               aggfunc="sum")
    calls = results.pivot_table(index="task", columns="method", values="calls", aggfunc="mean")
    order = [m for m in methods if m in auc.columns]
    table = pd.DataFrame(index=auc.index)
    for m in order:
        table[m] = auc[m]
    for m in order:
        table[f"{m} s"] = wall[m]
    for m in order:
        table[f"{m} calls"] = calls[m]
    formats = {c: (lambda v: f"{v:.3f}") if c in order else (lambda v: f"{v:.0f}")
               for c in table.columns}
    lines = [table.to_string(formatters=formats)]
    complete = auc[order].dropna()  # tasks every method finished
    lines.append("")
    budgets = sorted((c for c in results.columns if c.startswith("pmo_auc_top10_at_")),
                     key=lambda c: int(c.rsplit("_", 1)[1]))
    for column in ["pmo_auc_top10", *budgets]:
        sums = results.pivot_table(index="task", columns="method", values=column,
                                   aggfunc="mean").loc[complete.index, order].sum()
        when = ("at the full budget" if column == "pmo_auc_top10"
                else f"after the first {column.rsplit('_', 1)[1]} calls")
        lines.append(f"sum of PMO AUC top-10 over the {len(complete)} tasks all methods ran, "
                     f"{when}: " + ", ".join(
                         f"{m} {sums[m]:.3f}" + (f" ({sums[m] / sums[SCREENING]:.3f}x)"
                                                 if SCREENING in sums and m != SCREENING
                                                 else "")
                         for m in order))
    seeds = results.groupby("method")["seed"].nunique()
    lines.append("seeds per method: " + ", ".join(f"{m} {seeds[m]}" for m in order) +
                 "; wall seconds in all: " + ", ".join(
                     f"{m} {results.loc[results['method'] == m, 'wall_seconds'].sum():.0f}"
                     for m in order))
    lines.append(f"most oracle calls in a run: {int(results['calls'].max())} "
                 f"(budget {int(results['budget'].max())})")
    return table, "\n".join(lines)


def beside_published(results: pd.DataFrame, methods: Sequence[str]) -> str:
    """Per task, each method's AUC as mean ± sd over seeds beside the published means, with
    the sums; the tasks below screening (by their mean) are named underneath.

    Only runs at the published budget (10,000 calls) are compared: an AUC is divided by its
    budget, so a smaller budget's AUC is not the same number.
    """
    runs = results[results["budget"] == PUBLISHED_BUDGET]
    if runs.empty:
        return ""
    published = pd.read_csv(PUBLISHED, comment="#").set_index("task")
    grouped = runs.groupby(["task", "method"])["pmo_auc_top10"]
    mean, sd = grouped.mean().unstack(), grouped.std(ddof=1).unstack()
    order = [m for m in methods if m in mean.columns]
    complete = mean[order].dropna().index  # tasks every method finished
    tasks = [t for t in published.index if t in complete]
    table = pd.DataFrame(index=pd.Index(tasks, name="task"))
    for m in order:
        table[m] = [_mean_sd(mean.at[t, m], sd.at[t, m]) for t in tasks]
    for column in published.columns:
        table[column] = published.loc[tasks, column].map("{:.3f}".format)
    sums = {m: mean.loc[tasks, m].sum() for m in order}
    table.loc["sum"] = [*(f"{sums[m]:.3f}" for m in order),
                        *(f"{published.loc[tasks, c].sum():.3f}" for c in published.columns)]
    lines = [f"PMO AUC top-10 at {PUBLISHED_BUDGET:,} calls, mean ± sd over seeds, beside the "
             f"published means ({PUBLISHED.name}):", table.to_string(),
             _sums_per_seed(runs, order, tasks)]
    if SCREENING in order:
        for m in order:
            if m != SCREENING:
                below = [t for t in tasks if mean.at[t, m] < mean.at[t, SCREENING]]
                lines.append(f"{m}: {sums[m] / sums[SCREENING]:.3f}x screening; tasks below "
                             f"screening: {', '.join(below) or 'none'}")
    return "\n".join(lines)


def _sums_per_seed(runs: pd.DataFrame, methods: Sequence[str], tasks: Sequence[str]) -> str:
    """Each seed's sum over ``tasks``, per method: how far the mean's sum moves with the seed
    (a seed that has not finished every task is left out)."""
    parts = []
    for m in methods:
        auc = runs[(runs["method"] == m) & runs["task"].isin(tasks)].pivot_table(
            index="seed", columns="task", values="pmo_auc_top10").dropna()
        sums = auc.sum(axis=1)
        if len(sums):
            parts.append(f"{m} " + " / ".join(f"{v:.3f}" for v in sums) +
                         (f" (sd {sums.std(ddof=1):.3f})" if len(sums) > 1 else ""))
    return f"sum per seed over these {len(tasks)} tasks: " + ", ".join(parts)


def _mean_sd(mean: float, sd: float) -> str:
    return f"{mean:.3f}" if math.isnan(sd) else f"{mean:.3f} ± {sd:.3f}"


def top10_curve(scores: np.ndarray, budget: int) -> list[tuple[int, float]]:
    """(calls, top-10 mean so far) every :data:`CURVE_EVERY` calls up to the budget; a run that
    stopped early stays flat at its last value, as the AUC counts it."""
    return [(calls, top_k_mean(scores[:calls]))
            for calls in range(CURVE_EVERY, budget + 1, CURVE_EVERY)]


def plot_curves(curves: pd.DataFrame, path: str | Path) -> Path:
    """Top-10 mean against oracle calls: a panel per task and one for the sum over tasks, a
    line per method (the mean over seeds); the area under each line is the PMO AUC."""
    mean = curves.groupby(["task", "method", "calls"])["top10"].mean().reset_index()
    methods = list(dict.fromkeys(mean["method"]))
    finished = mean.groupby("task")["method"].nunique()
    tasks = sorted(finished.index[finished == len(methods)])  # every method ran them
    mean = mean[mean["task"].isin(tasks)]
    columns = 5
    rows = math.ceil((len(tasks) + 1) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows))
    panels = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    total = mean.pivot_table(index="calls", columns="method", values="top10", aggfunc="sum")
    for method in methods:
        panels[0].plot(total.index, total[method], label=method)
    panels[0].set(title=f"sum over {len(tasks)} tasks", ylabel="top-10 mean")
    panels[0].legend(fontsize=7)
    for axes, task in zip(panels[1:], tasks):
        part = mean[mean["task"] == task]
        for method in methods:
            line = part[part["method"] == method]
            axes.plot(line["calls"], line["top10"], label=method)
        axes.set_title(task, fontsize=9)
    for axes in panels[len(tasks) + 1:]:
        axes.set_visible(False)
    for axes in panels[-columns:]:
        axes.set_xlabel("oracle calls")
    figure.tight_layout()
    return save_figure(figure, path)


def curves_path(out: Path) -> Path:
    """Where the runs' top-10 curves are kept beside their ``--out`` CSV."""
    return out.with_name(out.stem + "-curves.csv")


def figure_path(out: Path) -> Path:
    return out.with_name(out.stem + "-curves.png")


def report(results: pd.DataFrame, curves: pd.DataFrame | None, methods: Sequence[str],
           figure: Path) -> str:
    """The printed report of the runs; draws ``figure`` when there are curves."""
    _, text = summarize(results, methods)
    seeds = " ".join(map(str, sorted(results["seed"].unique())))
    parts = [f"PMO, budget {int(results['budget'].max())}, seeds {seeds}; PMO AUC top-10 (mean "
             f"over seeds), wall seconds (sum over seeds), oracle calls (mean)", text]
    if published := beside_published(results, methods):
        parts += ["", published]
    if curves is not None and not curves.empty:
        parts.append(f"top-10 mean against calls: {plot_curves(curves, figure)}")
    return "\n".join(parts)


def read_runs(paths: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The rows of one or more ``--out`` CSVs and their curves (a run repeated in several,
    such as screening, counts once)."""
    key = ["task", "method", "seed", "budget"]
    results = pd.concat([pd.read_csv(p) for p in paths]).drop_duplicates(key, keep="last")
    if "options" in results:  # an empty --set reads back as NaN
        results["options"] = results["options"].astype(object).fillna("")
    found = [pd.read_csv(curves_path(p)) for p in paths if curves_path(p).exists()]
    curves = pd.concat(found).drop_duplicates([*key, "calls"], keep="last") if found else None
    return results.reset_index(drop=True), curves


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Redraw the report of benchmarks/pmo.py runs "
                                     "from their --out CSVs (and -curves.csv files beside them).")
    parser.add_argument("results", type=Path, nargs="+", help="--out CSVs of pmo.py (joined)")
    parser.add_argument("--figure", type=Path, help="top-10 curves figure (default: beside the "
                        "first CSV, -curves.png)")
    args = parser.parse_args(argv)
    results, curves = read_runs(args.results)
    methods = [SCREENING, *(m for m in dict.fromkeys(results["method"]) if m != SCREENING)]
    print(report(results, curves, methods, args.figure or figure_path(args.results[0])))


if __name__ == "__main__":
    main()
