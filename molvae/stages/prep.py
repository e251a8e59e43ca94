"""The prep stage: molecule files in, a clean, tokenized, split data set out.

Read every input, standardize each molecule (:mod:`molvae.data.prep`), de-duplicate on
canonical SMILES, split (random or Bemis–Murcko scaffold), build the vocabulary on train.

Nothing is lost: every input row ends in exactly one of the splits, ``duplicates.csv``
(pointing at the kept row) or ``rejects.csv`` (with a reason a person understands).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError, option
from molvae.data.prep import (
    RECORD_COLUMNS,
    SPLITS,
    assign_splits,
    numeric_extras,
    standardize_table,
)
from molvae.data.sources import read_source
from molvae.data.tokens import Vocab, split_selfies
from molvae.io import write_json, write_table
from molvae.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class PrepConfig:
    """Options of ``molvae prep``."""

    inputs: list[str] = option(help="molecule files (CSV/TSV/SMI/SDF, .gz ok) or moses[:split]",
                               positional=True)
    out: Path = option(Path("prepared"), help="output folder")
    smiles_col: str | None = option(None, help="SMILES column of CSV/TSV input (auto-detected)")
    stereo: bool = option(True, help="keep stereochemistry (--no-stereo removes it)")
    allowed_elements: list[str] = option(list(chem.ORGANIC_ELEMENTS),
                                         help="elements a molecule may contain")
    min_heavy_atoms: int = option(2, help="fewest heavy atoms a molecule may have")
    max_heavy_atoms: int = option(80, help="most heavy atoms a molecule may have")
    max_tokens: int = option(120, help="most SELFIES tokens a molecule may have")
    split: str = option("random", help="random or scaffold (Bemis-Murcko groups kept apart)")
    val_fraction: float = option(0.1, help="fraction of molecules for validation")
    test_fraction: float = option(0.1, help="fraction of molecules for test")
    seed: int = option(0, help="random seed for splitting")
    limit: int | None = option(None, help="use only the first N rows of each input")
    workers: int = option(0, help="worker processes (0 = all cores)")
    chunk_size: int = option(2000, help="molecules per work unit")

    def validate(self) -> None:
        """Refuse nonsense up front (``--limit -5`` once silently dropped five rows)."""
        if not self.inputs:
            raise ConfigError("inputs: give at least one molecule file or moses[:split]")
        minimum = {"limit": 1, "chunk_size": 1, "max_tokens": 1, "min_heavy_atoms": 1,
                   "max_heavy_atoms": 1, "workers": 0}
        for key, least in minimum.items():
            value = getattr(self, key)
            if value is not None and value < least:
                raise ConfigError(f"{key} must be at least {least}, got {value}")
        if self.max_heavy_atoms > chem.HEAVY_ATOM_LIMIT:
            raise ConfigError(f"max_heavy_atoms must be at most {chem.HEAVY_ATOM_LIMIT} (larger "
                              f"molecules are never parsed), got {self.max_heavy_atoms}")
        if not self.allowed_elements:
            raise ConfigError("allowed_elements: give at least one element")
        if self.split not in ("random", "scaffold"):
            raise ConfigError(f"split must be 'random' or 'scaffold', got '{self.split}'")
        for key in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {getattr(self, key)}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must leave molecules for training")
        if self.min_heavy_atoms > self.max_heavy_atoms:
            raise ConfigError("min_heavy_atoms is larger than max_heavy_atoms")


@dataclass
class PrepResult:
    """Where the prepared data went and how many molecules ended where."""

    out: Path
    counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"prepared {self.out}: {parts} ({self.seconds:.1f} s)"

    def headline(self) -> dict[str, float]:
        """How many molecules went in, were kept and landed in each split."""
        return {f"n_{name}": float(n) for name, n in self.counts.items()}


def run(config: PrepConfig, tracker: Tracker | None = None) -> PrepResult:
    """The prep stage: read, standardize, filter, de-duplicate, split, tokenize, write."""
    tracker = tracker or Tracker()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    tables = []
    for spec in config.inputs:
        table = read_source(spec, config.smiles_col)
        if config.limit is not None:
            table = table.head(config.limit)
        table.insert(1, "source", spec)
        table.insert(2, "row", np.arange(1, len(table) + 1))
        tables.append(table)
    raw = pd.concat(tables, ignore_index=True)
    timings["read_s"] = time.perf_counter() - start

    t0 = time.perf_counter()
    records = standardize_table(raw["smiles"], config.stereo, config.allowed_elements,
                                config.min_heavy_atoms, config.max_heavy_atoms,
                                config.max_tokens, config.workers, config.chunk_size)
    timings["standardize_s"] = time.perf_counter() - t0

    rejected = records["smiles"].isna()
    rejects = pd.DataFrame({"source": raw["source"], "row": raw["row"],
                            "raw": raw["smiles"], "reason": records["reason"]})[rejected]
    reserved = {*RECORD_COLUMNS, "source", "row"}
    kept = pd.concat([records.drop(columns=["reason"]), raw[["source", "row"]],
                      numeric_extras(raw.drop(columns=["source", "row"]), reserved)],
                     axis=1)[~rejected]
    duplicated = kept["smiles"].duplicated(keep="first")
    first = kept[~duplicated].set_index("smiles")[["source", "row"]]
    dupes = kept.loc[duplicated, ["source", "row", "smiles"]]
    dupes = dupes.assign(duplicate_of_source=dupes["smiles"].map(first["source"]),
                         duplicate_of_row=dupes["smiles"].map(first["row"]))
    unique = kept[~duplicated].reset_index(drop=True)
    out = Path(config.out)
    if unique.empty:
        write_table(rejects, out / "rejects.csv")
        raise ValueError(f"no molecule passed standardization; see {out}/rejects.csv")

    t0 = time.perf_counter()
    unique["split"] = assign_splits(unique["smiles"], config.split, config.val_fraction,
                                    config.test_fraction, config.seed)
    timings["split_s"] = time.perf_counter() - t0
    vocab = Vocab.build(unique.loc[unique["split"] == "train", "selfies"])

    for name in SPLITS:
        part = unique[unique["split"] == name].drop(columns=["split"])
        write_table(part, out / f"{name}.parquet")
    vocab.save(out / "vocab.json")
    write_table(rejects, out / "rejects.csv")
    write_table(dupes, out / "duplicates.csv")

    known = set(vocab.tokens)
    unseen = {name: int(sum(any(t not in known for t in split_selfies(s))
                            for s in unique.loc[unique["split"] == name, "selfies"]))
              for name in ("val", "test")}
    reasons = Counter(r.split(":")[0] for r in rejects["reason"])
    counts = {"input": len(raw), "kept": len(unique), "duplicates": len(dupes),
              "rejected": len(rejects),
              **{name: int((unique["split"] == name).sum()) for name in SPLITS}}
    seconds = time.perf_counter() - start
    report = {"counts": counts, "reject_reasons": dict(reasons),
              "inputs": {s: int((raw["source"] == s).sum()) for s in config.inputs},
              "vocab_size": len(vocab), "max_tokens": vocab.max_length,
              "molecules_with_tokens_unseen_in_train": unseen,
              "timings_s": {**timings, "total_s": seconds},
              "molecules_per_s": len(raw) / max(seconds, 1e-9)}
    write_json(report, out / "report.json")
    if counts["kept"] + counts["duplicates"] + counts["rejected"] != counts["input"]:
        raise RuntimeError(f"molecule accounting does not add up: {counts}")

    tracker.log_metrics({f"n_{k}": v for k, v in counts.items()})
    tracker.log_metrics({"vocab_size": len(vocab), "max_tokens": vocab.max_length,
                         "molecules_per_s": report["molecules_per_s"], "seconds": seconds})
    tracker.log_metrics({f"rejects/{k}": v for k, v in reasons.items()})
    for name in ("report.json", "vocab.json", "rejects.csv", "duplicates.csv"):
        tracker.log_artifact(out / name)
    return PrepResult(out=out, counts=counts, reasons=dict(reasons), seconds=seconds)
