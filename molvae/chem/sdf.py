"""SDF in and out: reading records into a table (SD tags as columns), and writing a table as
SDF (RDKit's SDWriter), every other column as SD tags."""

from __future__ import annotations

import gzip
import io
import math
import re
import zlib
from pathlib import Path

import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem import rdDepictor

from molvae.chem.mol import HEAVY_ATOM_LIMIT, RejectReason, to_mol
from molvae.io import unreadable

SDF_REASON = "sdf_reason"
"""Column of :func:`read_sdf` saying why a record has no SMILES; present only when a record
could not be read. An SD tag of that name (or ``smiles``) is read as ``sd_<name>``."""

ATOM_LIMIT = 4 * HEAVY_ATOM_LIMIT
"""Most atoms, hydrogens included, a record may have before RDKit writes its SMILES: writing
SMILES walks the molecule graph recursively, and a 20,000-atom chain overflows the stack (a
segfault that kills prep or encode, not an exception)."""

_RDKIT_ERROR = re.compile(r"ERROR: (.+)")
_UNREADABLE_SDF = (gzip.BadGzipFile, EOFError, SystemError, RuntimeError, ValueError,
                   zlib.error)
"""What reading a damaged (``.gz``) SDF raises: a gzip error escapes RDKit's C++ reader as a
SystemError whose cause is the real error. Other OSErrors (permissions) pass as they are."""


def read_sdf(path: str | Path) -> pd.DataFrame:
    """An SDF file (``.gz`` too) as a table: ``smiles`` then the SD tags (and ``name``).

    A record that cannot be used has ``smiles`` None and its reason in :data:`SDF_REASON`
    (RDKit's parse error, or too many atoms), so prep reports it as such rather than as an
    empty SMILES. Size is screened before any SMILES is written (see :data:`ATOM_LIMIT`).

    Raises:
        ValueError: one line naming ``path`` when the file is not a readable (gzipped) SDF.
    """
    rows = []
    try:
        with _open(path) as handle, rdBase.CaptureErrorLog() as capture:
            seen = 0  # RDKit's error messages already read (those of earlier records)
            for mol in Chem.ForwardSDMolSupplier(handle, sanitize=False, removeHs=False):
                if mol is None:
                    messages = capture.messages
                    rows.append({"smiles": None, SDF_REASON: _parse_error(messages[seen:])})
                    seen = len(messages)
                    continue
                smiles, reason = _record_smiles(mol)
                row = {"smiles": smiles, SDF_REASON: reason}
                for tag, value in mol.GetPropsAsDict(includePrivate=False,
                                                     includeComputed=False).items():
                    row[f"sd_{tag}" if tag in ("smiles", SDF_REASON) else tag] = value
                if mol.HasProp("_Name") and mol.GetProp("_Name"):
                    row.setdefault("name", mol.GetProp("_Name"))
                rows.append(row)
    except _UNREADABLE_SDF as err:
        cause = err.__cause__ or err.__context__ or err
        lines = str(cause).strip().splitlines() or [type(cause).__name__]
        raise unreadable(Path(path), "SDF file", lines[0][:200]) from None
    if not rows:
        return pd.DataFrame(columns=["smiles"])
    table = pd.DataFrame(rows)
    if table[SDF_REASON].isna().all():
        table = table.drop(columns=[SDF_REASON])
    return table[["smiles", *[c for c in table.columns if c != "smiles"]]]


def _open(path: str | Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if str(path).lower().endswith(".gz") else open(path, "rb")


def _record_smiles(mol: Chem.Mol) -> tuple[str | None, str | None]:
    """A parsed record's SMILES ('' for a record without atoms, as :func:`write_sdf` writes an
    unparsable row), or None and why: too big to write."""
    atoms, heavy = mol.GetNumAtoms(), mol.GetNumHeavyAtoms()
    if heavy > HEAVY_ATOM_LIMIT:
        return None, f"{RejectReason.TOO_MANY_ATOMS}: {heavy} > {HEAVY_ATOM_LIMIT}"
    if atoms > ATOM_LIMIT:
        return None, f"{RejectReason.TOO_MANY_ATOMS}: {atoms} atoms with hydrogens > {ATOM_LIMIT}"
    return Chem.MolToSmiles(mol), None


def _parse_error(messages: str) -> str:
    """Why RDKit could not read a record, from the errors it logged since the last failed one
    (the last that says something; 'moving to the beginning of the next molecule' does not)."""
    found = [m.group(1).strip() for m in _RDKIT_ERROR.finditer(messages)]
    useful = [m for m in found if not m.startswith("moving to the beginning")]
    return "unparsable SDF record" + (f": {useful[-1][:200]}" if useful else "")


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
