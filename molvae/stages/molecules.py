"""The molecule tables of the stages that read molecules (encode, predict, anomaly) and write a
table (those, sample, decode, interpolate and analogs): reading the inputs, checking the output
path, joining the inputs' columns back onto a result, writing the table (SDF too).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from molvae import chem
from molvae.config import ConfigError
from molvae.data.sources import read_source
from molvae.io import TABLE_FORMATS, atomic_path, table_format, write_table

MOLECULE_TABLE_FORMATS = (*TABLE_FORMATS, ".sdf")
"""What a table of molecules may be written as: any table format, or SDF (a record per
molecule, the other columns as SD tags)."""


def read_molecules(inputs: list[str], smiles_col: str | None = None) -> pd.DataFrame:
    """Molecules from files (CSV/TSV/Parquet/SMI/SDF, gzipped too) or SMILES given directly.

    Returns a table whose first column ``input`` holds the raw strings, then ``source`` (the
    file or ``argument``) and the files' other columns.
    """
    parts = []
    for spec in inputs:
        if Path(spec).is_file() or spec == "moses" or spec.startswith("moses:"):
            table = read_source(spec, smiles_col).rename(columns={"smiles": "input"})
            table.insert(1, "source", spec)
        elif chem.to_mol(spec) is not None:
            table = pd.DataFrame({"input": [spec], "source": ["argument"]})
        else:
            raise FileNotFoundError(f"{spec}: neither a file nor a SMILES")
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def check_table_path(path: Path, key: str = "out") -> None:
    """A ConfigError now, not after the work, when ``path`` has an unknown extension."""
    try:
        table_format(path, MOLECULE_TABLE_FORMATS)
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None


def write_molecules(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a table of molecules atomically; the extension picks the format (see
    MOLECULE_TABLE_FORMATS). ``.sdf`` goes to :func:`molvae.chem.write_sdf` (a ``smiles``
    column, the other columns as SD tags), any other to :func:`molvae.io.write_table`."""
    path = Path(path)
    if table_format(path, MOLECULE_TABLE_FORMATS) != ".sdf":
        return write_table(table, path)
    with atomic_path(path) as tmp:
        chem.write_sdf(table, tmp)
    return path


def with_inputs(result: pd.DataFrame, molecules: pd.DataFrame) -> pd.DataFrame:
    """``result`` then the input columns it does not already have (input, source, tags)."""
    extra = molecules[[c for c in molecules.columns if c not in result.columns]]
    return pd.concat([result.reset_index(drop=True), extra.reset_index(drop=True)], axis=1)
