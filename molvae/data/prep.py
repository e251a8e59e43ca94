"""The per-molecule work of prep: standardize, filter, tokenize, describe; and the split.

Per molecule: parse → largest organic fragment → neutralize → (flatten stereo) → canonical
SMILES → element/size filters → SELFIES (checked by decoding back) → properties. A rejected
molecule carries a reason a person understands; nothing here raises on bad input. The prep
stage (:mod:`molvae.stages.prep`) reads the inputs, de-duplicates and writes the splits.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae import chem
from molvae.data.tokens import selfies_to_smiles, smiles_to_selfies, split_selfies
from molvae.parallel import map_chunks

SPLITS = ("train", "val", "test")
RECORD_COLUMNS = ("smiles", "selfies", "n_tokens", "reason", *chem.PROPERTY_NAMES)


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


def standardize_table(raw: pd.Series, keep_stereo: bool, allowed_elements: Sequence[str],
                      min_heavy: int, max_heavy: int, max_tokens: int, workers: int = 0,
                      chunk_size: int = 2000) -> pd.DataFrame:
    """Run :func:`process_smiles` over a column in parallel chunks, with a progress bar."""
    worker = partial(_process_chunk, keep_stereo=keep_stereo,
                     allowed_elements=tuple(allowed_elements), min_heavy=min_heavy,
                     max_heavy=max_heavy, max_tokens=max_tokens)
    records = map_chunks(worker, raw.tolist(), workers, chunk_size, "standardize")
    return pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS), index=raw.index)


def assign_splits(smiles: pd.Series, split: str, val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """A split name per molecule: random, or whole Bemis–Murcko scaffold groups per split.

    Scaffold split as in chemprop's balanced variant: groups too big for val/test go to train
    first, the rest are shuffled (seeded) and filled into train, val, test in turn.
    """
    n = len(smiles)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    rng = np.random.default_rng(seed)
    labels = np.empty(n, dtype=object)
    if split == "random":
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


def numeric_extras(table: pd.DataFrame, reserved: set[str]) -> pd.DataFrame:
    """User columns kept as they are, numeric where every filled value is a number."""
    extras = table.drop(columns=["smiles"]).rename(
        columns=lambda c: f"input_{c}" if c in reserved else c)
    for column in extras.columns:
        filled = extras[column].replace("", np.nan)
        converted = pd.to_numeric(filled, errors="coerce")
        if converted.notna().sum() == filled.notna().sum():
            extras[column] = converted
    return extras
