"""Training batches: token ids in memory (or on the device), length-bucketed batch order.

Molecules are tokenized once into a padded id matrix. Prep stores that matrix beside the
splits (``SPLIT.tokens.npz``, see :func:`write_token_cache`), because tokenizing a MOSES-sized
training set in Python at every training (re)start costs tens of seconds; a folder without it,
or with one that is not this folder's, is tokenized instead. Each epoch's batch order is a pure
function of (seed, epoch, rank), so a resumed run can rebuild the exact same order and skip
the batches it already did; and a GRU batch of similar lengths wastes little on padding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset
import torch

from molvae.data.manifest import check_prepared
from molvae.data.tokens import Vocab
from molvae.io import atomic_path

log = logging.getLogger(__name__)

BATCHES_PER_BUCKET = 50  # molecules are sorted by length within chunks of this many batches


@dataclass
class Batch:
    """Padded token ids [B, T], their lengths [B], standardized properties [B, P] and
    standardized conditions [B, C] (each None when not used), and the split's row of each
    molecule [B] (host; batches are reordered longest first, so row i is not rows[i])."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    properties: torch.Tensor | None = None
    conditions: torch.Tensor | None = None
    rows: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class TokenDataset:
    """Tokenized molecules of one split (with optional property targets).

    Attributes:
        tokens: [N, T] int32 token ids (bos ... eos, then pad), T the longest molecule.
        lengths: [N] int64 tokens per molecule, bos and eos included.
        properties: [N, P] standardized property values (NaN = missing), or None.
        conditions: [N, C] standardized condition values of a conditional model, or None.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    properties: np.ndarray | None = None
    conditions: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.properties = None if self.properties is None else \
            self.properties.astype(np.float32)
        self.conditions = None if self.conditions is None else \
            self.conditions.astype(np.float32)

    @classmethod
    def from_selfies(cls, selfies: Sequence[str], vocab: Vocab,
                     properties: np.ndarray | None = None,
                     conditions: np.ndarray | None = None) -> TokenDataset:
        """Tokenize SELFIES strings (unknown tokens become ``<unk>``)."""
        return cls.from_sequences([vocab.encode(s) for s in selfies], vocab.pad_id, properties,
                                  conditions)

    @classmethod
    def from_sequences(cls, ids: Sequence[Sequence[int]], pad_id: int,
                       properties: np.ndarray | None = None,
                       conditions: np.ndarray | None = None) -> TokenDataset:
        """Token id sequences of any lengths (bos ... eos each), padded."""
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        tokens = np.full((len(ids), int(lengths.max(initial=0))), pad_id, dtype=np.int32)
        for row, seq in enumerate(ids):
            tokens[row, :len(seq)] = seq
        return cls(tokens, lengths, properties, conditions)

    @classmethod
    def from_ids(cls, tokens: np.ndarray, pad_id: int, properties: np.ndarray | None = None,
                 conditions: np.ndarray | None = None) -> TokenDataset:
        """Padded ids of any integer type (a token cache's): a molecule's length is its count
        of non-pad ids, as pad never occurs inside one."""
        lengths = (tokens != pad_id).sum(axis=1).astype(np.int64)
        width = int(lengths.max(initial=0))
        return cls(np.ascontiguousarray(tokens[:, :width], dtype=np.int32), lengths,
                   properties, conditions)

    def __len__(self) -> int:
        return len(self.lengths)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded LongTensor [B, T] and lengths [B] of id sequences of any lengths."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    tokens = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad_id,
                        dtype=torch.long)
    for row, seq in enumerate(sequences):
        tokens[row, :len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return tokens, lengths


class DeviceTokens:
    """A tokenized split held as tensors on the training device: a batch is an index-select
    there, with no per-batch Python collate, DataLoader workers or host-to-device copy.

    At GPU speed the input pipeline, not the model, becomes the bottleneck; the whole MOSES
    training set (1.6M molecules x 57 tokens) is ~360 MB as int32. Lengths stay on the host
    too, because packing a GRU batch needs them there, and so batch widths never wait on the
    device.
    """

    def __init__(self, data: TokenDataset, device: torch.device) -> None:
        self.tokens = torch.from_numpy(data.tokens).to(device)
        self.host_lengths = torch.from_numpy(data.lengths)
        self.properties = None if data.properties is None else \
            torch.from_numpy(data.properties).to(device)
        self.conditions = None if data.conditions is None else \
            torch.from_numpy(data.conditions).to(device)

    def __len__(self) -> int:
        return len(self.host_lengths)

    def batch(self, rows: Sequence[int]) -> Batch:
        """The rows as a :class:`Batch`, longest molecule first (so the encoder packs it
        without a sort on the device) and trimmed to that molecule."""
        order = torch.argsort(self.host_lengths[list(rows)], descending=True, stable=True)
        picked = torch.as_tensor(rows, dtype=torch.long)[order]
        lengths = self.host_lengths[picked]
        index = picked.to(self.tokens.device, non_blocking=True)
        tokens = self.tokens.index_select(0, index)[:, :int(lengths.max())].long()
        props = None if self.properties is None else self.properties.index_select(0, index)
        conds = None if self.conditions is None else self.conditions.index_select(0, index)
        return Batch(tokens, lengths, props, conds, picked)


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[int]]:
    """This rank's batches (lists of row indices) for one epoch, in order.

    Rows are shuffled, sorted by length within chunks of ``BATCHES_PER_BUCKET`` batches, cut
    into batches, and the batches shuffled again. Every rank computes the same list and takes
    every ``world_size``-th batch; the list is trimmed so all ranks do the same number of steps.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = batch_size * BATCHES_PER_BUCKET
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size].tolist() for i in range(0, len(part), batch_size))
    batches = [batches[i] for i in rng.permutation(len(batches))]
    usable = len(batches) - len(batches) % world_size
    return batches[rank:usable:world_size]


@dataclass
class PreparedData:
    """The training and validation splits of a prepared folder, ready for batching."""

    vocab: Vocab
    train: TokenDataset
    val: TokenDataset
    val_smiles: list[str]
    property_names: list[str]
    property_mean: np.ndarray
    property_std: np.ndarray
    condition_names: list[str] = field(default_factory=list)
    condition_mean: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    condition_std: np.ndarray = field(default_factory=lambda: np.ones(0, np.float32))
    train_smiles: list[str] = field(default_factory=list)  # only when asked for (respelling)

    def in_vocabulary(self, vocab: Vocab) -> PreparedData:
        """These splits with their token ids re-expressed in ``vocab``, a vocabulary that holds
        every token of theirs (a trained model's, to fine-tune it on these molecules).

        Raises:
            ValueError: naming the tokens ``vocab`` lacks.
        """
        if vocab.tokens == self.vocab.tokens:
            return self
        index = {token: i for i, token in enumerate(vocab.tokens)}
        lacking = [token for token in self.vocab.tokens if token not in index]
        if lacking:
            raise ValueError(f"{len(lacking)} token(s) of the data are not in the vocabulary: "
                             f"{', '.join(lacking[:10])}")
        lookup = np.array([index[token] for token in self.vocab.tokens], dtype=np.int32)
        return replace(self, vocab=vocab,
                       train=replace(self.train, tokens=lookup[self.train.tokens]),
                       val=replace(self.val, tokens=lookup[self.val.tokens]))


TOKEN_SPLITS = ("train", "val")  # the splits training reads: prep caches their token ids


def token_cache_path(folder: Path, split: str) -> Path:
    """Where prep stores a split's token ids."""
    return folder / f"{split}.tokens.npz"


def _read_split(folder: Path, split: str, needed: Sequence[str]) -> pd.DataFrame:
    """The ``needed`` columns of a split, rows in file order (a token cache's rows are in this
    order too), index 0..N-1."""
    path = folder / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {folder} a folder made by `molvae prep`?")
    dataset = pyarrow.dataset.dataset(str(path), format="parquet")
    missing = [c for c in needed if c not in dataset.schema.names]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)} "
                         f"(available: {', '.join(dataset.schema.names)})")
    if not needed:  # pandas reads no rows without columns
        return pd.DataFrame(index=pd.RangeIndex(dataset.count_rows()))
    return pd.read_parquet(path, columns=list(dict.fromkeys(needed))).reset_index(drop=True)


def _vocab_digest(vocab: Vocab) -> str:
    return hashlib.sha256(json.dumps(vocab.tokens).encode()).hexdigest()


def _compact_dtype(vocab: Vocab) -> type[np.integer]:
    return np.uint8 if len(vocab) <= 256 else np.int16 if len(vocab) <= 32768 else np.int32


def write_token_cache(folder: Path, vocab: Vocab, run_id: str) -> list[Path]:
    """Store the token ids of the splits training reads beside them (prep, before its manifest).

    Each ``SPLIT.tokens.npz`` holds plain arrays (no pickles): the padded ids in the smallest
    integer type the vocabulary fits, the vocabulary's digest and the prep run id, which
    :func:`load_prepared` checks before trusting it.
    """
    written = []
    for split in TOKEN_SPLITS:
        tokens = TokenDataset.from_selfies(_read_split(folder, split, ["selfies"])["selfies"]
                                           .tolist(), vocab).tokens
        path = token_cache_path(folder, split)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, tokens=tokens.astype(_compact_dtype(vocab)),
                     vocab=np.array(_vocab_digest(vocab)), prep_run=np.array(run_id))
        written.append(path)
    return written


def _cached_tokens(folder: Path, split: str, vocab: Vocab, run_id: str | None,
                   rows: int) -> np.ndarray | None:
    """A split's cached token ids when they are this folder's (its manifest lists them, and
    they carry its prep run, vocabulary and row count), else None, with a log line saying why
    the split is tokenized instead."""
    path = token_cache_path(folder, split)
    if not path.is_file():
        log.info("%s: no %s (prepared by an older molvae): tokenizing %d molecules; rerun "
                 "`molvae prep` to store them", folder, path.name, rows)
        return None
    try:
        check_prepared(folder, [path.name])
    except ValueError as err:
        log.warning("%s: tokenizing %d molecules", err, rows)
        return None
    try:
        with np.load(path, allow_pickle=False) as cache:
            tokens, digest, cached_run = cache["tokens"], str(cache["vocab"]), \
                str(cache["prep_run"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        why: str | None = f"not a token cache: {type(err).__name__}"
    else:
        why = ("its ids are not a padded id matrix"
               if tokens.ndim != 2 or tokens.dtype.kind not in "iu" else
               "it was made with another vocabulary" if digest != _vocab_digest(vocab) else
               f"it is from prep run {cached_run}" if run_id and cached_run != run_id else
               f"it has {len(tokens)} rows, the split {rows}" if len(tokens) != rows else None)
        if why is None:
            return tokens
    log.warning("%s: ignoring %s (%s): tokenizing %d molecules", folder, path.name, why, rows)
    return None


def _statistics(table: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where degenerate) of columns, NaN ignored."""
    if not names:
        return np.zeros(0), np.ones(0)
    values = table[names].to_numpy(np.float64)
    std = np.nanstd(values, axis=0)
    return np.nanmean(values, axis=0), np.where(np.isfinite(std) & (std > 0), std, 1.0)


def _drop_missing(table: pd.DataFrame, names: list[str], split: str) -> pd.DataFrame:
    """Rows with every condition known (a conditional model needs all of them)."""
    known = table[names].notna().all(axis=1) if names else None
    if known is None or known.all():
        return table
    missing = [k for k in names if table[k].isna().any()]
    log.warning("%s: dropped %d molecules without %s", split, int((~known).sum()),
                ", ".join(missing))
    return table[known]


def load_prepared(folder: str | Path, property_names: Sequence[str] = (),
                  max_train: int | None = None, seed: int = 0,
                  condition_names: Sequence[str] = (), train_smiles: bool = False
                  ) -> PreparedData:
    """Read train/val splits and the vocabulary; standardize properties and conditions with
    train statistics. Token ids come from the splits' token caches where they are valid.

    Args:
        folder: output of ``molvae prep``.
        property_names: columns to learn with the property head (may be empty).
        max_train: use a seeded random subset of at most this many training molecules.
        seed: seed of that subset.
        condition_names: columns a conditional model reads (rows missing one are dropped).
        train_smiles: keep the training split's SMILES too (``molvae.data.respell``).

    Raises:
        ValueError: the vocabulary and splits are not all from the prep run the folder's
            manifest names (a folder without a manifest loads with a warning).
    """
    folder = Path(folder)
    if not (folder / "vocab.json").is_file():
        raise FileNotFoundError(f"{folder}/vocab.json not found: is {folder} a folder made by "
                                "`molvae prep`?")
    run_id = check_prepared(folder, ["vocab.json", "train.parquet", "val.parquet"])
    vocab = Vocab.load(folder / "vocab.json")
    names, conds = list(property_names), list(condition_names)
    tables, cached = {}, {}
    for split in TOKEN_SPLITS:
        columns = [*(["smiles"] if split == "val" or train_smiles else []), *names, *conds]
        rows = len(_read_split(folder, split, []))
        cached[split] = _cached_tokens(folder, split, vocab, run_id, rows)
        needed = columns if cached[split] is not None else ["selfies", *columns]
        tables[split] = _drop_missing(_read_split(folder, split, needed), conds, split)
    train, val = tables["train"], tables["val"]
    if not len(train) or not len(val):  # (.empty: also a frame without columns)
        raise ValueError(f"{folder}: train and val splits must both hold molecules "
                         f"(train {len(train)}, val {len(val)})")
    if max_train is not None and len(train) > max_train:
        train = train.sample(n=max_train, random_state=seed)
    mean, std = _statistics(train, names)
    cond_mean, cond_std = _statistics(train, conds)

    def dataset(table: pd.DataFrame, split: str) -> TokenDataset:
        properties = (table[names].to_numpy(np.float64) - mean) / std if names else None
        conditions = (table[conds].to_numpy(np.float64) - cond_mean) / cond_std \
            if conds else None
        ids = cached[split]
        if ids is None:
            return TokenDataset.from_selfies(table["selfies"].tolist(), vocab, properties,
                                             conditions)
        return TokenDataset.from_ids(ids[table.index.to_numpy()], vocab.pad_id, properties,
                                     conditions)

    log.info("data: %d train, %d val molecules, %d tokens", len(train), len(val), len(vocab))
    return PreparedData(
        vocab=vocab, train=dataset(train, "train"), val=dataset(val, "val"),
        val_smiles=val["smiles"].tolist(),
        property_names=names, property_mean=mean.astype(np.float32),
        property_std=std.astype(np.float32), condition_names=conds,
        condition_mean=cond_mean.astype(np.float32), condition_std=cond_std.astype(np.float32),
        train_smiles=train["smiles"].tolist() if train_smiles else [],
    )
