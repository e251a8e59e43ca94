"""Atomic file writing and reading tables users already have (CSV, TSV, Parquet, SMILES).

Every output is written to a temporary file in the same folder and renamed into place, so a
crash never leaves a half-written file that a later run would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(text: str, path: str | Path) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (non-JSON values such as paths become strings)."""
    return write_text(json.dumps(data, indent=2, default=str), path)


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically as Parquet (``.parquet``) or CSV (anything else)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/.smi table (gzipped text too). ``.smi`` gives columns smiles, name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind == ".parquet":
        return pd.read_parquet(path)
    if kind in (".smi", ".smiles", ".txt"):
        rows = []
        with _open_text(path) as handle:
            for line in handle:
                parts = line.strip().split(maxsplit=1)
                rows.append((parts[0] if parts else "", parts[1] if len(parts) > 1 else ""))
        return pd.DataFrame(rows, columns=["smiles", "name"])
    sep = "\t" if kind == ".tsv" else ","
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)


def _open_text(path: Path):  # noqa: ANN202
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt")
    return open(path)
