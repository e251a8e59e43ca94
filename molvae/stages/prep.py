"""The prep stage: molecule files in, a clean, tokenized, split data set out.

Inputs are streamed in pieces of ``chunk_size`` molecules; each piece is standardized
(:mod:`molvae.data.prep`) on the engine (a local Dask cluster, or ``--cluster``) and written
as one Parquet file, so memory stays flat however large the input. The whole-set steps
(de-duplication across pieces, the split, the vocabulary) then run on dask dataframes
(:mod:`molvae.data.partitions`), and each split is written as partitioned Parquet.

Nothing is lost: every input row ends in exactly one of the splits, ``duplicates.csv``
(pointing at the kept row) or ``rejects.csv`` (with a reason a person understands).

The folder is written as one unit: built beside ``OUT`` and swapped in whole
(:func:`molvae.io.atomic_folder`), with a ``manifest.json`` naming one run id and every file's
digest (:mod:`molvae.data.manifest`). A prep killed while it rewrites ``OUT`` leaves the old
data set whole, and readers refuse a folder whose files come from different runs. A killed
prep rerun with the same inputs and options resumes: the pieces it finished are kept beside
``OUT`` until a prep of ``OUT`` succeeds.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae import chem
from molvae.config import ConfigError, option
from molvae.data import partitions
from molvae.data.batching import TOKEN_SPLITS, token_cache_path, write_token_cache
from molvae.data.manifest import MANIFEST, RUN_KEY, write_manifest
from molvae.data.prep import (
    Standardize,
    make_room,
    merge_kinds,
    standardize_piece,
)
from molvae.data.sources import is_sdf, iter_source
from molvae.data.tokens import Vocab
from molvae.io import atomic_folder, atomic_path, write_json, write_text
from molvae.parallel import engine, map_ordered
from molvae.tracking import Tracker

log = logging.getLogger(__name__)

ROWS_PER_SPLIT_PARTITION = 100_000  # rows per Parquet file of a written split
OUTPUTS = ("train.parquet", "val.parquet", "test.parquet", "vocab.json", "report.json",
           "rejects.csv", "duplicates.csv", MANIFEST,
           *(token_cache_path(Path(), split).name for split in TOKEN_SPLITS))
"""What prep writes in ``OUT``: a folder holding only these (and its own leftovers) may be
replaced."""


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
    properties: list[str] = option(list(chem.PROPERTY_NAMES), help="properties computed per "
                                   "molecule (QED and SA cost most; 'none' for tokens only)")
    split: str = option("random", help="random or scaffold (Bemis-Murcko groups kept apart)")
    val_fraction: float = option(0.1, help="fraction of molecules for validation")
    test_fraction: float = option(0.1, help="fraction of molecules for test")
    seed: int = option(0, help="random seed for splitting")
    limit: int | None = option(None, help="use only the first N rows of each input")
    workers: int = option(0, help="worker processes of the local cluster (0 = all cores; 1 = "
                          "work in this process)")
    chunk_size: int = option(5000, help="molecules per piece (one task, one Parquet file)")
    cluster: str | None = option(None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                                 "(default $DASK_SCHEDULER_ADDRESS, else a local cluster); "
                                 "its workers must see the input and output folders")

    def __post_init__(self) -> None:
        """``--properties none`` is how a flag or YAML says no properties: it becomes the empty
        list here, when the config is made, so that :meth:`validate` only checks."""
        if self.properties in (["none"], ["None"]):
            self.properties = []

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
        unknown = sorted(set(self.properties) - set(chem.PROPERTY_NAMES))
        if unknown:
            raise ConfigError(f"properties: unknown {', '.join(unknown)} (known: "
                              f"{', '.join(chem.PROPERTY_NAMES)}, or none)")
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
    """The prep stage: read, standardize, filter, de-duplicate, split, tokenize, write.

    Everything is written into a new folder beside ``OUT`` that replaces ``OUT`` only once
    complete, so ``OUT`` never mixes two runs (a killed rewrite once left train from the new
    input and val, test and the vocabulary from the old).
    """
    tracker = tracker or Tracker()
    start = time.perf_counter()
    out = Path(config.out)
    _check_replaceable(out)
    work = _work_folder(config)
    with atomic_folder(out) as build:
        try:
            counts, reasons, report = _build(config, build, work, uuid.uuid4().hex, start)
        except BaseException as err:
            if not _resumable(err):
                shutil.rmtree(work, ignore_errors=True)
            raise
    for finished in work.parent.glob(f"{glob.escape(_work_stem(out))}-*"):
        shutil.rmtree(finished, ignore_errors=True)  # this run's, and any of other options
    seconds = report["timings_s"]["total_s"]
    tracker.log_metrics({f"n_{k}": v for k, v in counts.items()})
    tracker.log_metrics({"vocab_size": report["vocab_size"], "max_tokens": report["max_tokens"],
                         "molecules_per_s": report["molecules_per_s"], "seconds": seconds})
    tracker.log_metrics({f"rejects/{k}": v for k, v in reasons.items()})
    for name in ("report.json", "vocab.json", "rejects.csv", "duplicates.csv", MANIFEST):
        tracker.log_artifact(out / name)
    return PrepResult(out=out, counts=counts, reasons=reasons, seconds=seconds)


def _check_replaceable(out: Path) -> None:
    """Refuse an ``OUT`` that is not prep's to replace: the whole folder is swapped, so any
    other file in it (``--out .``, a project folder) would be deleted with the old data set."""
    if not os.path.lexists(out):
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    foreign = sorted(entry.name for entry in out.iterdir()
                     if entry.name not in (*OUTPUTS, ".done.json")
                     and not (entry.name.startswith(".") and entry.name.endswith(".tmp")))
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(f"--out {out} holds files `molvae prep` did not write ({shown}); prep "
                         "replaces the whole folder, so give an empty or a prepared folder")


def _resumable(err: BaseException) -> bool:
    """Whether the pieces a failed prep finished are worth keeping for a rerun: after an
    interrupt or a crash, yes; after bad input (a rerun fails the same way) or a full disk
    (the pieces hold space the user needs), no."""
    if isinstance(err, ValueError):
        return False
    return not (isinstance(err, OSError) and err.errno == errno.ENOSPC)


def _work_folder(config: PrepConfig) -> Path:
    """Where the standardized pieces wait for the whole-set steps: beside ``OUT``, named by
    the inputs (path, size, modification time) and every option that shapes a piece, so a
    killed prep rerun with the same inputs and options resumes with the pieces it finished
    (standardizing is most of prep's time), and any change starts afresh."""
    shaping = {key: value for key, value in vars(config).items()
               if key not in ("out", "workers", "cluster", "val_fraction", "test_fraction",
                              "seed")}
    files = {}
    for spec in config.inputs:
        if os.path.isfile(spec):
            stat = os.stat(spec)
            files[spec] = [os.path.realpath(spec), stat.st_size, stat.st_mtime_ns]
    key = hashlib.sha256(json.dumps([shaping, files], sort_keys=True, default=str).encode())
    out = Path(os.path.realpath(config.out))
    return out.with_name(f"{_work_stem(out)}-{key.hexdigest()[:16]}")


def _work_stem(out: Path) -> str:
    """The name every work folder of ``OUT`` starts with (``.NAME.prep``), ``OUT`` resolved
    as :func:`_work_folder` resolves it, so a symlinked ``OUT`` is cleaned up too."""
    return f".{Path(os.path.realpath(out)).name}.prep"


def _build(config: PrepConfig, build: Path, work: Path, run_id: str, start: float
           ) -> tuple[dict[str, int], dict[str, int], dict]:
    """Write the whole prepared folder into ``build`` (manifest last) from the pieces in
    ``work``; returns the counts, the reject reasons and the report."""
    (work / "records").mkdir(parents=True, exist_ok=True)
    finished = len(list((work / "done").glob("part-*.json")))
    if finished:
        log.info("resuming a killed prep: %d piece(s) of %d molecules already standardized "
                 "in %s", finished, config.chunk_size, work)
    rules = Standardize(config.stereo, tuple(config.allowed_elements), config.min_heavy_atoms,
                        config.max_heavy_atoms, config.max_tokens, tuple(config.properties),
                        config.split == "scaffold")
    with engine(config.cluster, config.workers) as current:
        streamed = _standardize_inputs(config, rules, work, build)
        timings = {"standardize_s": time.perf_counter() - start}
        if streamed.kept == 0:
            rejects = _keep_rejects(build / "rejects.csv", Path(config.out))
            raise ValueError(f"no molecule passed standardization; see {rejects}")
        t0 = time.perf_counter()
        with partitions.scheduler_config(current.scheduler()):
            counts, n_duplicates, vocab, unseen = _whole_set_steps(config, work, build,
                                                                   streamed)
        timings["dedupe_split_write_s"] = time.perf_counter() - t0
        engine_used = f"dask ({current.address or 'local cluster'})" if current.distributed \
            else "this process"
    write_text(json.dumps({**vocab.to_dict(), RUN_KEY: run_id}, indent=1), build / "vocab.json")

    counts = {"input": streamed.inputs, "kept": streamed.kept - n_duplicates,
              "duplicates": n_duplicates, "rejected": sum(streamed.reasons.values()), **counts}
    if counts["kept"] + counts["duplicates"] + counts["rejected"] != counts["input"] or \
            sum(counts[name] for name in ("train", "val", "test")) != counts["kept"]:
        raise RuntimeError(f"molecule accounting does not add up: {counts}")
    seconds = time.perf_counter() - start
    report = {RUN_KEY: run_id, "counts": counts, "reject_reasons": dict(streamed.reasons),
              "inputs": streamed.per_source, "vocab_size": len(vocab),
              "max_tokens": vocab.max_length, "molecules_with_tokens_unseen_in_train": unseen,
              "timings_s": {**timings, "total_s": seconds},
              "molecules_per_s": streamed.inputs / max(seconds, 1e-9),
              "engine": engine_used}
    write_json(report, build / "report.json")
    write_token_cache(build, vocab, run_id)  # so no training (re)start tokenizes again
    write_manifest(build, run_id)
    return counts, dict(streamed.reasons), report


def _keep_rejects(rejects: Path, out: Path) -> Path:
    """Where the rejects of a prep that kept nothing go, as the build folder is dropped: into
    ``OUT`` when it holds no data set (as always), else beside it, so a failed run neither
    replaces a good prepared folder nor mixes a file into it."""
    if not (out / "vocab.json").exists() and not (out / MANIFEST).exists():
        target = out / "rejects.csv"
    else:
        target = out.with_name(f"{out.name}.rejects.csv")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(rejects, target)
    return target


@dataclass
class Streamed:
    """What the streaming pass saw: rows in, rows kept (duplicates included), reject reasons,
    rows per input, and the numeric kind of each user column."""

    kept: int = 0
    reasons: Counter = field(default_factory=Counter)
    per_source: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def inputs(self) -> int:
        return sum(self.per_source.values())


def _pieces(config: PrepConfig, seen: Streamed) -> Iterator[pd.DataFrame]:
    """Every input in pieces, each row with its source, its row number and its place."""
    order = 0
    for spec in config.inputs:
        seen.per_source[spec] = 0
        for piece in iter_source(spec, config.smiles_col, config.chunk_size):
            if config.limit is not None:
                piece = piece.head(config.limit - seen.per_source[spec])
            piece, renamed = make_room(piece, is_sdf(spec))
            if renamed and not seen.per_source[spec]:
                log.warning("%s: column(s) %s kept as %s (prep adds its own source, row "
                            "and order columns)", spec, ", ".join(map(str, renamed)),
                            ", ".join(renamed.values()))
            first = seen.per_source[spec]
            piece.insert(1, "source", spec)
            piece.insert(2, "row", np.arange(first + 1, first + len(piece) + 1))
            piece.insert(3, "order", np.arange(order, order + len(piece)))
            seen.per_source[spec] += len(piece)
            order += len(piece)
            if len(piece):
                yield piece
            if config.limit is not None and seen.per_source[spec] >= config.limit:
                break


def _standardize_inputs(config: PrepConfig, rules: Standardize, work: Path, build: Path
                        ) -> Streamed:
    """Stream the inputs through :func:`standardize_piece` on the engine; kept records land in
    ``work/records`` (one Parquet file per piece), rejects in ``build/rejects.csv`` in input
    order."""
    seen = Streamed()
    (work / "rejects").mkdir(exist_ok=True)
    worker = partial(standardize_piece, rules=rules, work=work)
    with tqdm(desc="standardize", unit="mol", delay=1) as bar:  # no bar for a quick failure
        for piece in map_ordered(worker, enumerate(_pieces(config, seen)), config.workers):
            seen.kept += piece.kept
            seen.reasons.update(piece.reasons)
            seen.kinds = merge_kinds(seen.kinds, piece.kinds)
            bar.update(piece.rows)
    empty = [spec for spec, rows in seen.per_source.items() if not rows]
    if len(empty) == len(seen.per_source):  # not "see rejects.csv": it would be empty too
        raise ValueError(f"no molecules in {', '.join(empty)}")
    if empty:
        log.warning("no molecules in %s", ", ".join(empty))
    _join_csv(sorted((work / "rejects").glob("part-*.csv")), build / "rejects.csv",
              "source,row,raw,reason\n")
    return seen


def _join_csv(parts: list[Path], path: Path, header: str) -> None:
    """One CSV from per-piece CSVs (each with the same header), streamed, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as out:
        out.write(header)
        for part in parts:
            with open(part) as handle:
                handle.readline()
                shutil.copyfileobj(handle, out)


def _whole_set_steps(config: PrepConfig, work: Path, out: Path, streamed: Streamed
                     ) -> tuple[dict[str, int], int, Vocab, dict[str, int]]:
    """De-duplicate, split, write the splits into ``out`` (the folder being built); returns
    (rows per split, duplicates, vocab, molecules with unseen tokens)."""
    n_parts = max(1, math.ceil(streamed.kept / ROWS_PER_SPLIT_PARTITION))
    shutil.rmtree(work / "marked", ignore_errors=True)  # a killed run's, half written
    marked = partitions.deduplicate(work / "records", work / "marked", config.seed, n_parts)
    n_duplicates = partitions.write_duplicates(marked, out / "duplicates.csv")
    unique = marked[marked["duplicate_of_source"].isna()]
    n_unique = streamed.kept - n_duplicates
    n_val, n_test = round(n_unique * config.val_fraction), round(n_unique * config.test_fraction)
    labelled = partitions.split_labels(unique, config.split, n_val, n_test, config.seed)
    counts = partitions.write_splits(labelled, out, streamed.kinds)
    vocab = partitions.build_vocab(out)
    return counts, n_duplicates, vocab, partitions.unseen_tokens(out, vocab)
