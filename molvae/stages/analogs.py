"""The analogs stage: more molecules like the given ones, for data augmentation.

For each input molecule the model's posterior is sampled around its mean, with the spread tuned
per molecule until the decoded molecules' Tanimoto similarity to it falls in ``--similarity``
(see :mod:`molvae.model.analogs`); valid, unique analogs inside the band are kept.

Outputs in ``OUT``: ``analogs.csv`` (or ``--table-format sdf``/parquet/...: parent_index,
parent, smiles, similarity, spread, then the property panel), ``parents.csv`` (per parent: the
analogs found, their mean similarity, the final spread, why a parent has none) and
``grid.png`` (each of the first parents followed by its analogs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem, plots
from molvae.config import ConfigError, device_option, model_option, option
from molvae.data.sources import read_source
from molvae.io import write_table
from molvae.model.analogs import generate_analogs
from molvae.model.store import load_model
from molvae.stages.molecules import MOLECULE_TABLE_FORMATS, write_molecules
from molvae.tracking import Tracker, local_model_dir

GRID_PARENTS, GRID_ANALOGS = 4, 5


@dataclass
class AnalogsConfig:
    """Options of ``molvae analogs``."""

    molecules: str = option(help="parent molecules: a file (CSV/TSV/SMI/SDF, .gz ok) or one "
                            "SMILES", positional=True)
    model: str = model_option()
    n: int = option(50, help="analogs wanted per parent molecule", aliases=("-n",))
    similarity: str = option("0.4:0.8", help="LOW:HIGH band of Tanimoto similarity (Morgan, "
                             "radius 2) to the parent that an analog must fall in")
    rounds: int = option(8, help="rounds of decoding per parent at most (each decodes 2n "
                         "codes and retunes the spread)")
    smiles_col: str | None = option(None, help="SMILES column of a CSV/TSV input "
                                    "(auto-detected)")
    out: Path = option(Path("analogs"), help="output folder")
    table_format: str = option("csv", help="format of the analog table: csv, csv.gz, tsv, "
                               "parquet or sdf")
    seed: int = option(0, help="random seed")
    device: str = device_option()

    def band(self) -> tuple[float, float]:
        """The similarity band as (low, high)."""
        try:
            low, high = (float(x) for x in self.similarity.split(":"))
        except ValueError:
            raise ConfigError(f"similarity must be LOW:HIGH, e.g. 0.4:0.8, got "
                              f"'{self.similarity}'") from None
        if not 0 <= low < high <= 1:
            raise ConfigError(f"similarity must satisfy 0 <= LOW < HIGH <= 1, got "
                              f"'{self.similarity}'")
        return low, high

    def validate(self) -> None:
        self.band()
        if not Path(self.molecules).exists() and chem.to_mol(self.molecules) is None:
            raise ConfigError(f"molecules: '{self.molecules}' is neither a file nor a valid "
                              "SMILES")
        for key in ("n", "rounds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if f".{self.table_format}" not in MOLECULE_TABLE_FORMATS:
            raise ConfigError(f"table_format must be one of "
                              f"{', '.join(f[1:] for f in MOLECULE_TABLE_FORMATS)}, got "
                              f"'{self.table_format}'")


@dataclass
class AnalogsResult:
    """The analogs, the per-parent summary and where they went."""

    out: Path
    analogs: pd.DataFrame
    parents: pd.DataFrame

    def summary(self) -> str:
        usable = self.parents[self.parents["reason"] == ""]
        return (f"{len(self.analogs)} analogs for {len(usable)} of {len(self.parents)} parents "
                f"(median {usable['analogs'].median():.0f} per parent, asked "
                f"{int(self.parents['asked'].iloc[0])})\n  → {self.out}")


def read_parents(spec: str, smiles_col: str | None) -> list[str]:
    """Parent SMILES from a molecule file, or the one SMILES given."""
    if Path(spec).exists():
        return read_source(spec, smiles_col)["smiles"].astype(str).tolist()
    return [spec]


def run(config: AnalogsConfig, tracker: Tracker | None = None) -> AnalogsResult:
    """Generate, add the property panel, write the tables and the grid."""
    tracker = tracker or Tracker()
    model = load_model(local_model_dir(config.model), config.device)
    parents = read_parents(config.molecules, config.smiles_col)
    analogs, summary = generate_analogs(model, parents, config.n, config.band(),
                                        config.rounds, seed=config.seed)
    props = pd.DataFrame([chem.smiles_properties(s) for s in analogs["smiles"]],
                         columns=list(chem.PROPERTY_NAMES))
    analogs = pd.concat([analogs.reset_index(drop=True), props], axis=1)
    out = Path(config.out)
    write_molecules(analogs, out / f"analogs.{config.table_format}")
    write_table(summary, out / "parents.csv")
    shown, legends = [], []
    for i in summary["parent_index"][:GRID_PARENTS]:
        mine = analogs[analogs["parent_index"] == i].head(GRID_ANALOGS)
        shown += [summary["parent"][i], *mine["smiles"]]
        legends += ["parent", *[f"sim {v:.2f}" for v in mine["similarity"]]]
        shown += [""] * (GRID_ANALOGS - len(mine))
        legends += [""] * (GRID_ANALOGS - len(mine))
    if shown:
        plots.molecule_grid(shown, legends, out / "grid.png", per_row=GRID_ANALOGS + 1,
                            size=(200, 200))
    usable = summary[summary["reason"] == ""]
    tracker.log_metrics({
        "parents": len(summary), "parents_usable": len(usable), "analogs": len(analogs),
        "analogs_per_parent": float(usable["analogs"].mean()) if len(usable) else np.nan,
        "parents_filled": float((usable["analogs"] >= config.n).mean()) if len(usable)
        else np.nan,
    })
    tracker.log_artifact(out)
    return AnalogsResult(out, analogs, summary)
