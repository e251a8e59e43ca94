"""The per-molecule work of prep: standardize, filter, tokenize, describe; and the split.

Per molecule: parse → largest organic fragment → neutralize → (flatten stereo) → canonical
SMILES → element/size filters → SELFIES (checked by decoding back) → properties. A rejected
molecule carries a reason a person understands; nothing here raises on bad input. The prep
stage (:mod:`molvae.stages.prep`) streams the inputs through here piece by piece on the engine;
:mod:`molvae.data.partitions` de-duplicates across pieces and writes the splits.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.data.tokens import selfies_to_smiles, smiles_to_selfies, split_selfies
from molvae.io import atomic_path, write_json

SPLITS = ("train", "val", "test")
RECORD_COLUMNS = ("smiles", "selfies", "n_tokens", "reason")  # then the properties asked for


@dataclass(frozen=True)
class Standardize:
    """The per-molecule rules of prep (what :func:`process_smiles` follows)."""

    keep_stereo: bool = True
    allowed_elements: tuple[str, ...] = tuple(chem.ORGANIC_ELEMENTS)
    min_heavy: int = 2
    max_heavy: int = 80
    max_tokens: int = 120
    properties: tuple[str, ...] = chem.PROPERTY_NAMES  # the panel computed per molecule
    scaffolds: bool = False  # also record each molecule's Bemis-Murcko scaffold


def process_smiles(raw: object, rules: Standardize) -> tuple:
    """One molecule through the whole per-molecule pipeline: a tuple of RECORD_COLUMNS, then
    ``rules.properties``. A rejected molecule has ``smiles`` None and a ``reason``; never
    raises on bad input."""
    text = raw if isinstance(raw, str) else None
    mol, reason = chem.parse_with_reason(text)
    if mol is not None:
        mol = chem.standardize_mol(mol, keep_stereo=rules.keep_stereo)
        reason = chem.RejectReason.NO_ATOMS if mol is None else None
    if mol is None:
        return (None, None, 0, reason, *[np.nan] * len(rules.properties))
    reason = chem.filter_reason(mol, rules.allowed_elements, rules.min_heavy, rules.max_heavy)
    smiles = chem.canonical_smiles(mol)  # a parsed molecule always has one
    selfies, n_tokens = None, 0
    if reason is None and smiles is not None:
        selfies, n_tokens, reason = _to_selfies(smiles, rules.max_tokens)
    if reason is not None or selfies is None:
        return (None, None, 0, reason, *[np.nan] * len(rules.properties))
    values = chem.properties(mol, rules.properties)
    return (smiles, selfies, n_tokens, None, *(values[name] for name in rules.properties))


def _to_selfies(smiles: str, max_tokens: int) -> tuple[str | None, int, str | None]:
    """A canonical SMILES as (SELFIES, its tokens, None), or (None, 0, why not): a SELFIES
    must decode back to the same molecule, or training would learn another one."""
    selfies = smiles_to_selfies(smiles)
    if selfies is None:
        return None, 0, "SELFIES encoder cannot represent this molecule"
    if selfies_to_smiles(selfies) != smiles:
        return None, 0, "SELFIES round trip changes the molecule"
    n_tokens = len(split_selfies(selfies))
    if n_tokens > max_tokens:
        return None, 0, f"SELFIES too long: {n_tokens} > {max_tokens} tokens"
    return selfies, n_tokens, None


def standardize_partition(raw: pd.DataFrame, rules: Standardize
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One piece of input (columns smiles, source, row, order, then the user's) through
    :func:`process_smiles`: (kept records, rejects with their reasons). Runs on a worker.

    The user's columns travel as text (missing ones as <NA>), so every piece of a large input
    has the same Parquet schema; prep decides which are numeric once it has seen them all.
    """
    records = pd.DataFrame.from_records([process_smiles(r, rules) for r in raw["smiles"]],
                                        columns=[*RECORD_COLUMNS, *rules.properties],
                                        index=raw.index)
    if chem.SDF_REASON in raw.columns:  # an SDF record that could not be read says why
        unread = raw[chem.SDF_REASON].notna()
        records.loc[unread, "reason"] = raw.loc[unread, chem.SDF_REASON]
        raw = raw.drop(columns=[chem.SDF_REASON])
    rejected = records["smiles"].isna().to_numpy()
    rejects = pd.DataFrame({"source": raw["source"], "row": raw["row"], "raw": raw["smiles"],
                            "reason": records["reason"]})[rejected]
    kept = pd.concat([records.drop(columns=["reason"]), raw[list(PLACE_COLUMNS)],
                      user_columns(raw.drop(columns=["smiles", *PLACE_COLUMNS]))],
                     axis=1)[~rejected]
    if rules.scaffolds:
        kept["scaffold"] = pd.array([chem.scaffold(s) or "" for s in kept["smiles"]],
                                    dtype="string")
    return kept.reset_index(drop=True), rejects.reset_index(drop=True)


PLACE_COLUMNS = ("source", "row", "order")  # where a row came from, and its place overall
OWN_COLUMNS = {*RECORD_COLUMNS, *chem.PROPERTY_NAMES, *PLACE_COLUMNS, "scaffold"}
RESERVED_COLUMNS = {*RECORD_COLUMNS, *chem.PROPERTY_NAMES, *PLACE_COLUMNS, "scaffold", "split",
                    "split_key",
                    "duplicate_of_source", "duplicate_of_row"}


@dataclass
class PieceSummary:
    """What a worker reports of one piece (its records and rejects stay in files)."""

    rows: int
    kept: int
    reasons: Counter
    kinds: dict[str, str]


def standardize_piece(numbered: tuple[int, pd.DataFrame], rules: Standardize, work: Path
                      ) -> PieceSummary:
    """:func:`standardize_partition` on a worker: piece ``i``'s kept records go to
    ``work/records/part-i.parquet`` and its rejects to ``work/rejects/part-i.csv``, so only a
    small summary travels back to the driver. The summary is written last, to
    ``work/done/part-i.json``: a piece that has one was finished by an earlier, killed prep
    of the same inputs and options, and is not standardized again."""
    index, raw = numbered
    name = f"part-{index:06d}"
    done = work / "done" / f"{name}.json"
    if done.is_file():
        saved = json.loads(done.read_text())
        return PieceSummary(saved["rows"], saved["kept"], Counter(saved["reasons"]),
                            saved["kinds"])
    kept, rejects = standardize_partition(raw, rules)
    if len(kept):
        with atomic_path(work / "records" / f"{name}.parquet") as tmp:
            kept.to_parquet(tmp, index=False)
    with atomic_path(work / "rejects" / f"{name}.csv") as tmp:
        rejects.to_csv(tmp, index=False)
    user = kept.drop(columns=[c for c in kept.columns if c in OWN_COLUMNS])
    summary = PieceSummary(len(raw), len(kept),
                           Counter(r.split(":")[0] for r in rejects["reason"]),
                           numeric_kinds(user))
    write_json({"rows": summary.rows, "kept": summary.kept, "reasons": dict(summary.reasons),
                "kinds": summary.kinds}, done)
    return summary


def make_room(piece: pd.DataFrame, sdf: bool) -> tuple[pd.DataFrame, dict[str, str]]:
    """A piece of input with the user's columns that prep adds itself (``source``, ``row``,
    ``order``, and :data:`~molvae.chem.SDF_REASON`) renamed ``input_NAME``, so prep can add its
    own (inserting them once failed with "cannot insert source, already exists"). The reasons
    :func:`~molvae.chem.read_sdf` gives (``sdf`` True) stay. Returns the piece and the renames.
    """
    reasons = piece.pop(chem.SDF_REASON) if sdf and chem.SDF_REASON in piece.columns else None
    taken = {str(c) for c in piece.columns}
    renamed = {}
    for column in piece.columns:
        if column in (*PLACE_COLUMNS, chem.SDF_REASON):
            name = f"input_{column}"
            while name in taken:
                name = f"input_{name}"
            renamed[column] = name
            taken.add(name)
    piece = piece.rename(columns=renamed)
    if reasons is not None:
        piece[chem.SDF_REASON] = reasons
    return piece, renamed


def user_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The user's columns as text; one whose name prep uses itself gets an ``input_`` prefix."""
    return pd.DataFrame({
        f"input_{c}" if c in RESERVED_COLUMNS else str(c):
            pd.array([None if _missing(v) else str(v) for v in table[c]], dtype="string")
        for c in table.columns}, index=table.index)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def numeric_kinds(table: pd.DataFrame) -> dict[str, str]:
    """Per user text column of one piece: 'int' when every value is an integer, 'float' when
    every filled value is a number (blanks allowed), else 'text'."""
    kinds = {}
    for column in table.columns:
        filled = table[column].replace("", pd.NA).dropna()
        numbers = pd.to_numeric(filled, errors="coerce")
        if numbers.notna().sum() < len(filled):
            kinds[column] = "text"
        elif len(filled) == len(table) and (numbers == numbers.round()).all():
            kinds[column] = "int"
        else:
            kinds[column] = "float"
    return kinds


def merge_kinds(a: dict[str, str], b: dict[str, str]) -> dict[str, str]:
    """The kind that fits both pieces (text beats float beats int)."""
    rank = {"int": 0, "float": 1, "text": 2}
    return {c: max(a.get(c, "int"), b.get(c, "int"), key=rank.__getitem__) for c in {*a, *b}}


def apply_kinds(table: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    """User columns converted to the numbers every piece agreed on."""
    table = table.copy()
    for column, kind in kinds.items():
        if kind != "text" and column in table.columns:
            numbers = pd.to_numeric(table[column].replace("", pd.NA), errors="coerce")
            table[column] = numbers.astype("int64" if kind == "int" else "float64")
    return table


def split_key(smiles: pd.Series, seed: int) -> pd.Series:
    """A seeded 64-bit hash per molecule: the random split ranks molecules by it, so a
    molecule lands in the same split however the input is cut into pieces or ordered."""
    return pd.util.hash_pandas_object(smiles, index=False, hash_key=f"molvae-split{seed:04d}"[-16:])


def scaffold_split(sizes: pd.Series, n_val: int, n_test: int, seed: int) -> dict[str, str]:
    """A split per Bemis–Murcko scaffold (``sizes``: molecules per scaffold), as in chemprop's
    balanced variant: groups too big for val/test go to train first, the rest are shuffled
    (seeded) and filled into train, val, test in turn."""
    sizes = sizes.sort_index()
    limit = max(n_val, n_test) / 2
    big = sizes[sizes > limit].sort_values(ascending=False, kind="stable")
    small = sizes[sizes <= limit]
    small = small.iloc[np.random.default_rng(seed).permutation(len(small))]
    train_target = int(sizes.sum()) - n_val - n_test
    counts = {"train": 0, "val": 0, "test": 0}
    assignment = {}
    for scaffold, size in big.items():
        assignment[scaffold] = "train"
        counts["train"] += int(size)
    for scaffold, size in small.items():
        if counts["train"] + size <= train_target:
            name = "train"
        elif counts["val"] + size <= n_val:
            name = "val"
        elif counts["test"] + size <= n_test:
            name = "test"
        else:
            name = "train"
        assignment[scaffold] = name
        counts[name] += int(size)
    return assignment
