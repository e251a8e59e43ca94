"""The prep stage: molecule files in, a clean, tokenized, split data set out.

Per molecule: parse → largest organic fragment → neutralize → (flatten stereo) → canonical
SMILES → element/size filters → SELFIES (checked by decoding back) → properties. Then
de-duplicate, split (random or Bemis–Murcko scaffold), and build the vocabulary on train.

Nothing is lost: every input row ends in exactly one of the splits, ``duplicates.csv``
(pointing at the kept row) or ``rejects.csv`` (with a reason a person understands).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae import chem
from molvae.config import ConfigError, option
from molvae.io import write_json, write_table
from molvae.sources import read_source
from molvae.tokens import Vocab, selfies_to_smiles, smiles_to_selfies, split_selfies
from molvae.tracking import Tracker

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
RECORD_COLUMNS = ("smiles", "selfies", "n_tokens", "reason", *chem.PROPERTY_NAMES)


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


def process_smiles(raw: object, keep_stereo: bool, allowed_elements: tuple[str, ...],
                   min_heavy: int, max_heavy: int, max_tokens: int) -> tuple:
    """One molecule through the whole per-molecule pipeline; returns a RECORD_COLUMNS tuple.

    A rejected molecule has ``smiles`` None and a ``reason``; never raises on bad input.
    """
    failed = (None, None, 0)
    text = raw if isinstance(raw, str) else None
    mol, reason = chem.parse_with_reason(text)
    if mol is None:
        return (*failed, reason, *[np.nan] * len(chem.PROPERTY_NAMES))
    mol = chem.standardize_mol(mol, keep_stereo=keep_stereo)
    if mol is None:
        return (*failed, chem.RejectReason.NO_ATOMS, *[np.nan] * len(chem.PROPERTY_NAMES))
    reason = chem.filter_reason(mol, allowed_elements, min_heavy, max_heavy)
    smiles = chem.canonical_smiles(mol)
    selfies = smiles_to_selfies(smiles) if reason is None else None
    if reason is None and selfies is None:
        reason = "SELFIES encoder cannot represent this molecule"
    if reason is None and selfies_to_smiles(selfies) != smiles:
        reason = "SELFIES round trip changes the molecule"
    n_tokens = len(split_selfies(selfies)) if reason is None else 0
    if reason is None and n_tokens > max_tokens:
        reason = f"SELFIES too long: {n_tokens} > {max_tokens} tokens"
    if reason is not None:
        return (None, None, 0, reason, *[np.nan] * len(chem.PROPERTY_NAMES))
    props = chem.properties(mol)
    return (smiles, selfies, n_tokens, None, *[props[p] for p in chem.PROPERTY_NAMES])


def _process_chunk(raws: list, **kwargs: object) -> list[tuple]:
    return [process_smiles(r, **kwargs) for r in raws]


def standardize_table(raw: pd.Series, config: PrepConfig) -> pd.DataFrame:
    """Run :func:`process_smiles` over a column in parallel chunks, with a progress bar."""
    worker = partial(_process_chunk, keep_stereo=config.stereo,
                     allowed_elements=tuple(config.allowed_elements),
                     min_heavy=config.min_heavy_atoms, max_heavy=config.max_heavy_atoms,
                     max_tokens=config.max_tokens)
    values = raw.tolist()
    chunks = [values[i:i + config.chunk_size] for i in range(0, len(values), config.chunk_size)]
    workers = config.workers or os.cpu_count() or 1
    records: list[tuple] = []
    with tqdm(total=len(values), desc="standardize", unit="mol") as bar:
        if workers == 1 or len(chunks) <= 1:
            outputs = map(worker, chunks)
            for out in outputs:
                records.extend(out)
                bar.update(len(out))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for out in pool.map(worker, chunks):
                    records.extend(out)
                    bar.update(len(out))
    return pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS), index=raw.index)


def assign_splits(smiles: pd.Series, config: PrepConfig) -> pd.Series:
    """A split name per molecule: random, or whole Bemis–Murcko scaffold groups per split.

    Scaffold split as in chemprop's balanced variant: groups too big for val/test go to train
    first, the rest are shuffled (seeded) and filled into train, val, test in turn.
    """
    n = len(smiles)
    n_val, n_test = round(n * config.val_fraction), round(n * config.test_fraction)
    rng = np.random.default_rng(config.seed)
    labels = np.empty(n, dtype=object)
    if config.split == "random":
        order = rng.permutation(n)
        labels[order[:n_val]] = "val"
        labels[order[n_val:n_val + n_test]] = "test"
        labels[order[n_val + n_test:]] = "train"
        return pd.Series(labels, index=smiles.index)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(tqdm(smiles, desc="scaffolds", unit="mol")):
        groups.setdefault(chem.scaffold(s) or "", []).append(i)
    sets = list(groups.values())
    big = [g for g in sets if len(g) > max(n_val, n_test) / 2]
    small = [g for g in sets if len(g) <= max(n_val, n_test) / 2]
    small = [small[i] for i in rng.permutation(len(small))]
    big.sort(key=len, reverse=True)
    train_target = n - n_val - n_test
    counts = {"train": 0, "val": 0, "test": 0}
    for group in big + small:
        if counts["train"] + len(group) <= train_target or group in big:
            name = "train"
        elif counts["val"] + len(group) <= n_val:
            name = "val"
        elif counts["test"] + len(group) <= n_test:
            name = "test"
        else:
            name = "train"
        labels[group] = name
        counts[name] += len(group)
    return pd.Series(labels, index=smiles.index)


def _numeric_extras(table: pd.DataFrame, reserved: set[str]) -> pd.DataFrame:
    """User columns kept as they are, numeric where every filled value is a number."""
    extras = table.drop(columns=["smiles"]).rename(
        columns=lambda c: f"input_{c}" if c in reserved else c)
    for column in extras.columns:
        filled = extras[column].replace("", np.nan)
        converted = pd.to_numeric(filled, errors="coerce")
        if converted.notna().sum() == filled.notna().sum():
            extras[column] = converted
    return extras


def prep(config: PrepConfig, tracker: Tracker | None = None) -> PrepResult:
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
    records = standardize_table(raw["smiles"], config)
    timings["standardize_s"] = time.perf_counter() - t0

    rejected = records["smiles"].isna()
    rejects = pd.DataFrame({"source": raw["source"], "row": raw["row"],
                            "raw": raw["smiles"], "reason": records["reason"]})[rejected]
    reserved = {*RECORD_COLUMNS, "source", "row"}
    kept = pd.concat([records.drop(columns=["reason"]), raw[["source", "row"]],
                      _numeric_extras(raw.drop(columns=["source", "row"]), reserved)],
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
    unique["split"] = assign_splits(unique["smiles"], config)
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

