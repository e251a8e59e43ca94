"""PNG figures any stage can write: distributions side by side, and grids of molecules.

Figures are drawn with matplotlib's object API (no pyplot global state, no display needed)
and written atomically by :func:`save_figure`, the one place that sets their format and dpi.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from molvae import chem
from molvae.io import atomic_path

# axis labels for the standard property panel (chem.PROPERTY_NAMES); other columns show as named
AXIS_LABELS = {"mw": "molecular weight (Da)", "logp": "logP (Crippen, unitless)",
               "qed": "QED (0-1)", "sa": "SA score (1 easy - 10 hard)", "tpsa": "TPSA (Å²)",
               "hbd": "H-bond donors (count)", "hba": "H-bond acceptors (count)",
               "rotatable_bonds": "rotatable bonds (count)", "rings": "rings (count)",
               "heavy_atoms": "heavy atoms (count)", "plogp": "penalized logP (unitless)"}
SMILES_SHOWN = 30  # characters of SMILES under a grid picture before it is cut with '…'


def property_histograms(generated: pd.DataFrame, reference: pd.DataFrame,
                        columns: Sequence[str], path: str | Path,
                        labels: tuple[str, str] = ("generated", "reference"),
                        bins: int = 40, per_row: int = 4) -> Path:
    """One panel per column: normalized histograms of two tables on shared bins.

    Bins span the 0.5-99.5 percentiles of both samples; values beyond are counted in the edge
    bins, so one huge molecule does not squash the plot. Either table may be empty; columns
    missing from both are skipped.
    """
    from matplotlib.patches import Patch

    columns = [c for c in columns if c in generated.columns or c in reference.columns]
    n_rows = max(1, math.ceil(len(columns) / per_row))
    fig = Figure(figsize=(3.2 * per_row, 2.5 * n_rows + 0.4))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.09, top=1 - 0.5 / (2.5 * n_rows + 0.4),
                        hspace=0.55, wspace=0.3)
    axes = fig.subplots(n_rows, per_row, squeeze=False).ravel()
    colors = ("tab:blue", "tab:gray")
    for ax, column in zip(axes, columns):
        samples = [_finite(table, column) for table in (generated, reference)]
        present = [v for v in samples if v.size]
        if present:
            low = min(float(np.percentile(v, 0.5)) for v in present)
            high = max(float(np.percentile(v, 99.5)) for v in present)
            edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
            for values, color in zip(samples, colors):
                if values.size:
                    ax.hist(np.clip(values, edges[0], edges[-1]), bins=edges, density=True,
                            alpha=0.55, color=color, histtype="stepfilled")
        ax.set_xlabel(AXIS_LABELS.get(column, column), fontsize=9)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in axes[len(columns):]:
        ax.set_axis_off()
    counts = [f"{label} (n={len(table)})" for label, table in zip(labels, (generated, reference))]
    handles = [Patch(color=c, alpha=0.55) for c in colors]
    fig.legend(handles, counts, loc="upper center", ncol=2, frameon=False)
    return save_figure(fig, path)


def _finite(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.zeros(0)
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    return values[np.isfinite(values)]


def molecule_grid(smiles: Sequence[str], legends: Sequence[str] | None, path: str | Path,
                  per_row: int = 6, size: tuple[int, int] = (250, 250)) -> Path:
    """A PNG grid of molecules drawn by RDKit at one scale; under each, its position in
    ``smiles`` (#1 first: the rank or row a reader can look up), its legend and its SMILES."""
    legends = legends if legends is not None else [""] * len(smiles)
    labels = [f"#{i} {legend}".rstrip() + f"\n{_shorten(s)}"
              for i, (s, legend) in enumerate(zip(smiles, legends, strict=True), start=1)]
    png = chem.draw_grid(smiles, labels, per_row=per_row, size=size)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(png)
    return path


def _shorten(smiles: str) -> str:
    return smiles if len(smiles) <= SMILES_SHOWN else smiles[:SMILES_SHOWN - 1] + "…"


DPI = 120


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write a figure as PNG atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def predicted_vs_true(y_true: np.ndarray, y_pred: np.ndarray, prop: str, name: str,
                      scores: dict[str, float], path: str | Path) -> Path:
    """Predicted vs true on test, with the diagonal and R²/MAE in the title."""
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    axes.scatter(y_true, y_pred, s=6, alpha=0.5)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], color="black", linewidth=1)
    axes.set(xlabel=f"true {prop}", ylabel=f"predicted {prop}",
             title=f"{prop} ({name}, test): R² {scores['r2']:.3f}, MAE {scores['mae']:.3g}")
    figure.tight_layout()
    return save_figure(figure, path)


def latent_pca(z: np.ndarray, table: pd.DataFrame, properties: Sequence[str],
               path: str | Path) -> Path:
    """Latent means projected on their first two principal components, one panel per property."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2).fit(z)
    xy = pca.transform(z)
    figure = Figure(figsize=(4.5 * len(properties), 4))
    for axes, prop in zip(np.atleast_1d(figure.subplots(1, len(properties))), properties,
                          strict=True):
        points = axes.scatter(xy[:, 0], xy[:, 1], c=table[prop].to_numpy(dtype=float), s=4,
                              cmap="viridis")
        figure.colorbar(points, ax=axes, label=prop)
        ratio = pca.explained_variance_ratio_
        axes.set(xlabel=f"PC1 ({ratio[0]:.0%})", ylabel=f"PC2 ({ratio[1]:.0%})", title=prop)
    figure.tight_layout()
    return save_figure(figure, path)


def optimization_trace(trace: pd.DataFrame, title: str, path: str | Path) -> Path:
    """Best and top-k mean score against oracle calls (columns after ``oracle_calls``); a
    run without any solution gets a "no solution found" note instead of empty axes."""
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    values = trace.drop(columns="oracle_calls")
    if values.notna().any().any():
        for column in values.columns:
            axes.plot(trace["oracle_calls"], trace[column], label=column.replace("_", " "))
        axes.legend()
    else:  # an empty plot would read as a rendering bug; say what happened
        axes.text(0.5, 0.5, f"no solution found\nin {len(trace)} oracle calls",
                  ha="center", va="center", transform=axes.transAxes)
    axes.set(xlabel="oracle calls", ylabel="score", title=title)
    figure.tight_layout()
    return save_figure(figure, path)


def property_curves(table: pd.DataFrame, x: str, columns: Sequence[str], path: str | Path,
                    group: str | None = None) -> Path:
    """One panel per property column against ``x`` (e.g. the step of an interpolation), one
    line per value of ``group``; missing values (invalid molecules) leave gaps."""
    columns = [c for c in columns if c in table.columns]
    figure = Figure(figsize=(3.6 * max(1, len(columns)), 3.2))
    panels = np.atleast_1d(figure.subplots(1, max(1, len(columns))))
    groups = table.groupby(group, sort=False) if group else [("", table)]
    for name, part in groups:
        for axes, column in zip(panels, columns):
            axes.plot(part[x], pd.to_numeric(part[column], errors="coerce"), marker="o",
                      markersize=3, label=str(name) or None)
    for axes, column in zip(panels, columns):
        axes.set(xlabel=x, title=column)
    if group:
        panels[0].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)
