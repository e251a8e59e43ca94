"""The interpolate stage: the molecules along a latent path between two molecules.

Both molecules are encoded to their posterior means; ``--steps`` points on the path between
them (both ends included) are decoded greedily, on a straight line (``linear``) and on a great
circle around the fitted prior's mean (``spherical``), which stays at a typical distance from
the centre instead of cutting through it.

Outputs in ``OUT``: ``path.csv`` (or ``--table-format parquet``/...; columns method, step, t,
smiles, valid, qed, logp, sa), ``grid.png`` (one row of molecules per method) and
``properties.png`` (QED, logP and SA against the step, one line per method).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem, plots
from molvae.config import ConfigError, device_option, model_option, option
from molvae.model.ops import INTERPOLATIONS, interpolate
from molvae.model.store import load_model
from molvae.stages.molecules import MOLECULE_TABLE_FORMATS, write_molecules
from molvae.tracking import Tracker, local_model_dir

CURVE_PROPERTIES = ("qed", "logp", "sa")


@dataclass
class InterpolateConfig:
    """Options of ``molvae interpolate``."""

    start: str = option(help="SMILES of the first molecule", positional=True)
    end: str = option(help="SMILES of the last molecule", positional=True)
    model: str = model_option()
    steps: int = option(10, help="points on each path, both ends included")
    methods: list[str] = option(list(INTERPOLATIONS), help="paths: linear, spherical")
    out: Path = option(Path("interpolate"), help="output folder")
    table_format: str = option("csv", help="format of the path table: csv, csv.gz, tsv, "
                               "parquet or sdf")
    device: str = device_option()

    def validate(self) -> None:
        if self.steps < 2:
            raise ConfigError(f"steps must be >= 2, got {self.steps}")
        unknown = sorted(set(self.methods) - set(INTERPOLATIONS))
        if unknown or not self.methods:
            raise ConfigError(f"methods must be among {', '.join(INTERPOLATIONS)}, got "
                              f"{', '.join(self.methods) or 'none'}")
        if f".{self.table_format}" not in MOLECULE_TABLE_FORMATS:
            raise ConfigError(f"table_format must be one of "
                              f"{', '.join(f[1:] for f in MOLECULE_TABLE_FORMATS)}, got "
                              f"'{self.table_format}'")
        for key in ("start", "end"):
            if chem.to_mol(getattr(self, key)) is None:
                raise ConfigError(f"{key} '{getattr(self, key)}' is not a valid SMILES")


@dataclass
class InterpolateResult:
    """The path table and figures, and how many distinct valid molecules each path visits."""

    out: Path
    table: pd.DataFrame

    def distinct(self, method: str) -> int:
        part = self.table[(self.table["method"] == method) & self.table["valid"]]
        return int(part["smiles"].nunique())

    def summary(self) -> str:
        counts = ", ".join(f"{m} {self.distinct(m)}" for m in self.table["method"].unique())
        return f"distinct molecules along the path: {counts}\n  → {self.out}"


def run(config: InterpolateConfig, tracker: Tracker | None = None) -> InterpolateResult:
    """Decode both paths, compute the properties of every molecule, write table and figures."""
    tracker = tracker or Tracker()
    model = load_model(local_model_dir(config.model), config.device)
    table = pd.concat([interpolate(model, config.start, config.end, config.steps, method)
                       for method in config.methods], ignore_index=True)
    props = [chem.smiles_properties(s) for s in table["smiles"]]
    table["valid"] = [chem.to_mol(s) is not None for s in table["smiles"]]
    for name in CURVE_PROPERTIES:
        table[name] = [p.get(name, np.nan) for p in props]
    out = Path(config.out)
    write_molecules(table, out / f"path.{config.table_format}")
    legends = [f"{m} {s}" for m, s in zip(table["method"], table["step"])]
    plots.molecule_grid(table["smiles"].fillna("").tolist(), legends, out / "grid.png",
                        per_row=config.steps, size=(200, 200))
    plots.property_curves(table, "step", CURVE_PROPERTIES, out / "properties.png",
                          group="method")
    result = InterpolateResult(out, table)
    tracker.log_metrics({f"{m}/distinct": result.distinct(m) for m in config.methods})
    tracker.log_metrics({f"{m}/validity": float(table.loc[table["method"] == m, "valid"].mean())
                         for m in config.methods})
    tracker.log_artifact(out)
    return result
