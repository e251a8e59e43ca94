"""Reading molecule sources into one table shape: a ``smiles`` column plus the user's columns.

A source is a CSV/TSV/SMILES/SDF file (gzipped too) or the MOSES benchmark set, named
``moses`` / ``moses:train`` / ``moses:test`` / ``moses:test_scaffolds``. MOSES is read out of
the ``molsets==0.3.1`` wheel, fetched with ``pip download --no-deps`` into a cache folder
(never installed: its dependencies do not install on modern Python).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from molvae import chem
from molvae.config import ConfigError
from molvae.io import iter_table

log = logging.getLogger(__name__)

MOSES_PACKAGE = "molsets==0.3.1"
MOSES_SPLITS = ("train", "test", "test_scaffolds")
SMILES_COLUMN_NAMES = ("smiles", "canonical_smiles", "smi", "smiles_string", "structure", "mol")


def cache_dir() -> Path:
    """Where downloaded data lives: ``$MOLVAE_CACHE`` or ``~/.cache/molvae``."""
    return Path(os.environ.get("MOLVAE_CACHE") or Path.home() / ".cache" / "molvae")


def moses_wheel() -> Path:
    """Path of the molsets wheel, downloaded (not installed) into the cache when missing."""
    folder = cache_dir() / "molsets"
    wheels = sorted(folder.glob("molsets-0.3.1-*.whl"))
    if wheels:
        return wheels[0]
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s into %s (once)", MOSES_PACKAGE, folder)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", MOSES_PACKAGE,
           "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("molsets-0.3.1-*.whl"))
    if done.returncode != 0 or not wheels:
        raise FileNotFoundError(f"could not download {MOSES_PACKAGE}: {done.stderr.strip()[-500:]}")
    return wheels[0]


def read_moses(split: str = "train") -> pd.DataFrame:
    """The MOSES ``train``, ``test`` or ``test_scaffolds`` split as a table with ``smiles``."""
    return pd.concat(list(iter_moses(split)), ignore_index=True)


def iter_moses(split: str = "train", rows: int | None = None) -> Iterator[pd.DataFrame]:
    """:func:`read_moses` in pieces of at most ``rows`` rows (None: one piece)."""
    if split not in MOSES_SPLITS:
        raise ConfigError(f"unknown MOSES split '{split}' (choose from {', '.join(MOSES_SPLITS)})")
    with zipfile.ZipFile(moses_wheel()) as wheel:
        with wheel.open(f"moses/dataset/data/{split}.csv.gz") as handle:
            read = pd.read_csv(handle, compression="gzip", dtype=str, keep_default_na=False,
                               chunksize=rows)
            for piece in [read] if rows is None else read:
                yield piece.rename(columns={"SMILES": "smiles"})


def find_smiles_column(table: pd.DataFrame, requested: str | None, label: str) -> str:
    """The SMILES column: the one requested, a conventional name, or the one that parses best."""
    if requested:
        if requested not in table.columns:
            raise ConfigError(f"{label}: no column '{requested}' (columns: "
                              f"{', '.join(map(str, table.columns))})")
        return requested
    by_lower = {str(c).lower(): c for c in table.columns}
    for name in SMILES_COLUMN_NAMES:
        if name in by_lower:
            return by_lower[name]
    sample = table.head(50)
    best, best_hits = None, 0
    for column in table.columns:
        hits = sum(chem.to_mol(str(v)) is not None for v in sample[column] if isinstance(v, str))
        if hits > best_hits:
            best, best_hits = column, hits
    if best is None or best_hits < max(1, len(sample) // 2):
        raise ConfigError(f"{label}: no SMILES column found (columns: "
                          f"{', '.join(map(str, table.columns))}); name it with --smiles-col")
    return best


def is_sdf(spec: str) -> bool:
    """Whether an input is an SDF file (``.sdf``, ``.sd``, gzipped too)."""
    return any(s.lower() in (".sdf", ".sd") for s in Path(spec).suffixes)


def read_source(spec: str, smiles_col: str | None = None) -> pd.DataFrame:
    """Read one input into a table whose first column is ``smiles`` (raw strings).

    Args:
        spec: a file path (a folder of Parquet files too), or ``moses[:split]``.
        smiles_col: the SMILES column of a CSV/TSV/Parquet file; auto-detected when None.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: no SMILES column could be found.
    """
    return pd.concat(list(iter_source(spec, smiles_col)), ignore_index=True)


def iter_source(spec: str, smiles_col: str | None = None, rows: int | None = None
                ) -> Iterator[pd.DataFrame]:
    """:func:`read_source` in pieces of at most ``rows`` rows (None: one piece), so inputs of
    any size stream through prep in flat memory. The SMILES column is found in the first
    piece. SDF files are read whole (their tags can differ from record to record)."""
    if spec == "moses" or spec.startswith("moses:"):
        yield from iter_moses(spec.partition(":")[2] or "train", rows)
        return
    path = Path(spec)
    if not (path.is_file() or path.is_dir()):
        raise FileNotFoundError(f"input file not found: {spec}")
    if is_sdf(spec):
        table = chem.read_sdf(path)
        step = rows or max(1, len(table))
        for start in range(0, max(1, len(table)), step):
            yield table.iloc[start:start + step].reset_index(drop=True)
        return
    column = None
    for table in iter_table(path, rows):
        column = column or find_smiles_column(table, smiles_col, spec)
        if column not in table.columns:
            raise ConfigError(f"{spec}: no column '{column}' in every part of the file")
        table = table.rename(columns={column: "smiles"})
        yield table[["smiles", *[c for c in table.columns if c != "smiles"]]]
