"""Writing molecules as SDF (RDKit's SDWriter), every other column of the table as SD tags."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from rdkit import Chem
from rdkit.Chem import rdDepictor

from molvae.chem.mol import to_mol


def write_sdf(table: pd.DataFrame, path: str | Path, smiles_col: str = "smiles") -> Path:
    """Write one SDF record per row (2D coordinates), written to ``path`` as given.

    A row whose SMILES does not parse is kept as an empty record (no atoms) with its tags, so
    records and rows stay aligned. Missing values (None, NaN) become absent tags.

    Raises:
        ValueError: the table has no ``smiles_col`` column.
    """
    if smiles_col not in table.columns:
        raise ValueError(f"cannot write SDF: no '{smiles_col}' column "
                         f"(columns: {', '.join(map(str, table.columns))})")
    tags = [c for c in table.columns if c != smiles_col]
    writer = Chem.SDWriter(str(path))
    try:
        for row in table.itertuples(index=False):
            values = dict(zip(table.columns, row))
            mol = to_mol(values[smiles_col]) or Chem.Mol()
            if mol.GetNumAtoms():
                rdDepictor.Compute2DCoords(mol)
            if isinstance(values[smiles_col], str):
                mol.SetProp("_Name", values[smiles_col])
            for tag in tags:
                value = values[tag]
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                mol.SetProp(str(tag), str(value))
            writer.write(mol)
    finally:
        writer.close()
    return Path(path)
