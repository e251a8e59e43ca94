"""The whole-data-set steps of prep, on dask dataframes: de-duplicate across pieces, split,
build the vocabulary, write each split as partitioned Parquet.

The standardized pieces (one Parquet file each) are read as one dask dataframe, so nothing
here holds the data set in memory: on a cluster the work is spread over its workers, without
one it runs piece by piece in this process.

- De-duplication: rows are shuffled on canonical SMILES, so every copy of a molecule meets
  the others in one partition, whatever piece it came from; the first copy in input order is
  kept and the others point at it.
- Random split: molecules are ranked by a seeded hash of their SMILES and the lowest go to
  val, then test: exact fractions, and the same split however the input was cut or ordered.
- Scaffold split: molecules per scaffold are counted on the workers; whole groups are
  assigned here (:func:`molvae.data.prep.scaffold_split`).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow.dataset
import pyarrow.parquet

from molvae.data.prep import SPLITS, apply_kinds, scaffold_split, split_key
from molvae.data.tokens import Vocab, split_selfies

DUPLICATE_COLUMNS = ["source", "row", "smiles", "duplicate_of_source", "duplicate_of_row"]
WORK_COLUMNS = ["order", "split_key", "split", "scaffold", "duplicate_of_source",
                "duplicate_of_row"]


def mark_duplicates(part: pd.DataFrame) -> pd.DataFrame:
    """In one shuffled partition: every copy after the first (in input order) of a molecule
    gets ``duplicate_of_source``/``duplicate_of_row`` of the first."""
    part = part.sort_values("order", kind="stable")
    repeated = part["smiles"].duplicated(keep="first")
    first = part[~repeated].set_index("smiles")
    part["duplicate_of_source"] = part["smiles"].map(first["source"]).where(repeated)
    part["duplicate_of_row"] = part["smiles"].map(first["row"]).where(repeated).astype("Int64")
    return part


def deduplicate(records: Path, work: Path, seed: int, n_parts: int) -> dd.DataFrame:
    """Records (a folder of standardized pieces) with duplicates marked and the split key
    added, written once to ``work`` and read back, so later steps do not redo the shuffle.
    Pieces from different inputs may carry different user columns; missing ones read as
    empty."""
    _align_columns(sorted(records.glob("*.parquet")))
    frame = dd.read_parquet(str(records))
    marked = frame.shuffle(on="smiles", npartitions=n_parts).map_partitions(_mark_and_key, seed)
    marked.to_parquet(str(work), write_index=False, overwrite=True)
    return dd.read_parquet(str(work))


def _align_columns(files: list[Path]) -> None:
    """Give every piece the user columns of all pieces (empty where its input had none)."""
    names = [pyarrow.parquet.read_schema(f).names for f in files]
    every = list(dict.fromkeys(n for file_names in names for n in file_names))
    for file, file_names in zip(files, names):
        if file_names != every:
            part = pd.read_parquet(file)
            for column in every:
                if column not in part.columns:
                    part[column] = pd.array([None] * len(part), dtype="string")
            part[every].to_parquet(file, index=False)


def _mark_and_key(part: pd.DataFrame, seed: int) -> pd.DataFrame:
    part = mark_duplicates(part)
    part["split_key"] = split_key(part["smiles"], seed).to_numpy(dtype=np.uint64)
    return part


def write_duplicates(marked: dd.DataFrame, path: Path) -> int:
    """``duplicates.csv`` (each repeat and the kept row it repeats), partition by partition;
    returns how many rows it has."""
    repeats = marked[~marked["duplicate_of_source"].isna()][DUPLICATE_COLUMNS]
    tmp = path.with_name(f".{path.name}.tmp")
    repeats.to_csv(str(tmp), single_file=True, index=False)
    os.replace(tmp, path)
    return int(marked["duplicate_of_source"].count().compute())


def split_labels(unique: dd.DataFrame, split: str, n_val: int, n_test: int, seed: int
                 ) -> dd.DataFrame:
    """``unique`` with a ``split`` column: exact ``n_val``/``n_test`` molecules."""
    if split == "scaffold":
        sizes = unique.groupby("scaffold")["smiles"].count().compute()
        assignment = scaffold_split(sizes, n_val, n_test, seed)
        return unique.assign(split=unique["scaffold"].map(assignment, meta=("split", object)))
    lowest = np.sort(unique["split_key"].nsmallest(n_val + n_test).compute().to_numpy())
    return unique.map_partitions(_rank_split, lowest, n_val)


def _rank_split(part: pd.DataFrame, lowest: np.ndarray, n_val: int) -> pd.DataFrame:
    keys = part["split_key"].to_numpy(dtype=np.uint64)
    labels = np.full(len(part), "train", dtype=object)
    labels[np.isin(keys, lowest[n_val:])] = "test"
    labels[np.isin(keys, lowest[:n_val])] = "val"
    return part.assign(split=labels)


def write_splits(labelled: dd.DataFrame, out: Path, kinds: dict[str, str]) -> dict[str, int]:
    """Each split as partitioned Parquet (``OUT/train.parquet/part.N.parquet``), work columns
    dropped and user columns converted to the numbers every piece agreed on; returns the
    molecules per split (from the Parquet footers, not the data)."""
    counts = {}
    for name in SPLITS:
        rows = labelled[labelled["split"] == name]
        rows = rows.drop(columns=[c for c in WORK_COLUMNS if c in rows.columns])
        rows = rows.map_partitions(apply_kinds, kinds, meta=apply_kinds(rows._meta, kinds))
        final = out / f"{name}.parquet"
        tmp = out / f".{name}.parquet.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        rows.to_parquet(str(tmp), write_index=False)
        _replace(tmp, final)
        counts[name] = pyarrow.dataset.dataset(str(final), format="parquet").count_rows()
    return counts


def _replace(tmp: Path, final: Path) -> None:
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    os.replace(tmp, final)


def build_vocab(out: Path) -> Vocab:
    """The vocabulary of the train split, token counts summed over its partitions."""
    train = dd.read_parquet(str(out / "train.parquet"), columns=["selfies", "n_tokens"])
    parts = dask.compute(*[dask.delayed(_token_counts)(p) for p in train.to_delayed()])
    counts: Counter[str] = sum((c for c, _ in parts), Counter())
    return Vocab.from_counts(counts, max((n for _, n in parts), default=0))


def _token_counts(part: pd.DataFrame) -> tuple[Counter, int]:
    counts: Counter[str] = Counter()
    for selfies in part["selfies"]:
        counts.update(split_selfies(selfies))
    return counts, int(part["n_tokens"].max()) if len(part) else 0


def unseen_tokens(out: Path, vocab: Vocab) -> dict[str, int]:
    """Molecules of val and test with a token the train split never showed the model."""
    known = set(vocab.tokens)
    unseen = {}
    for name in ("val", "test"):
        frame = dd.read_parquet(str(out / f"{name}.parquet"), columns=["selfies"])
        parts = [dask.delayed(_count_unseen)(p, known) for p in frame.to_delayed()]
        unseen[name] = int(sum(dask.compute(*parts)))
    return unseen


def _count_unseen(part: pd.DataFrame, known: set[str]) -> int:
    return sum(any(t not in known for t in split_selfies(s)) for s in part["selfies"])


def scheduler_config(scheduler: Any) -> Any:
    """``dask.config.set`` for the engine's scheduler (a client, 'threads' or 'sync')."""
    return dask.config.set(scheduler=scheduler)
