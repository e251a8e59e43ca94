"""Randomized-SMILES augmentation for a SELFIES model: each epoch, every training molecule is
written from a different random SMILES, then SELFIES.

A SELFIES model trained on one canonical spelling per molecule learns each ring's tokens from
one starting atom only; its mistakes in a Kekulé ring still decode to valid, non-aromatic
molecules (SELFIES' aromatic deficit, docs/cpu_model.md). Spelling each molecule differently
every epoch multiplies the spellings the decoder learns from (Arús-Pous et al. 2019). The
spellings of an epoch are a function of (seed, epoch), so a run resumed mid-epoch trains on
the same tokens as an uninterrupted one; :func:`epoch_spellings` keeps them in the run folder,
so a resume does not spell the split again (minutes for a million molecules).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from molvae import chem
from molvae.data.batching import PreparedData, TokenDataset
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.io import atomic_path

SPELLINGS_FILE = "spellings.npz"  # the current epoch's, in the run folder
log = logging.getLogger(__name__)


def random_selfies(smiles: str, draws: int, seed: int) -> list[str | None]:
    """SELFIES of ``draws`` random SMILES of a molecule (:func:`molvae.chem.random_smiles`),
    reproducible from ``seed``; empty when RDKit refuses the molecule."""
    return [smiles_to_selfies(s) for s in chem.random_smiles(smiles, draws, seed)]


def respelled(smiles: Sequence[str], canonical: TokenDataset, vocab: Vocab, seed: int,
              epoch: int) -> tuple[TokenDataset, int]:
    """``canonical`` (the split's prepared tokens, row for row with ``smiles``) with every
    molecule written from a random SMILES of this epoch, and how many molecules kept their
    prepared tokens: those whose spelling fails or needs a token outside ``vocab``.
    Properties and conditions stay as they are."""
    seeds = np.random.default_rng([seed, epoch]).integers(0, 2**31 - 1, len(smiles))
    ids: list[Sequence[int]] = []
    kept = 0
    for row, text in enumerate(tqdm(smiles, desc=f"respelling for epoch {epoch + 1}",
                                    unit="mol", mininterval=5)):
        written = next(iter(random_selfies(text, 1, int(seeds[row]))), None)
        if written is None or vocab.unknown(written):
            ids.append(canonical.tokens[row, :canonical.lengths[row]].tolist())
            kept += 1
        else:
            ids.append(vocab.encode(written))
    return TokenDataset.from_sequences(ids, vocab.pad_id, canonical.properties,
                                       canonical.conditions), kept


def epoch_spellings(folder: Path, data: PreparedData, seed: int, epoch: int) -> TokenDataset:
    """:func:`respelled` of the training split of ``data`` (loaded with ``train_smiles``),
    read from ``folder/spellings.npz`` when it holds this epoch's (of this seed, these
    molecules and this vocabulary), else computed and written there for a resume to read."""
    path, canonical = folder / SPELLINGS_FILE, data.train
    key = np.array([seed, epoch, len(data.train_smiles), _checksum(data.train_smiles),
                    _checksum(data.vocab.tokens)], dtype=np.int64)
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            if np.array_equal(saved["key"], key):
                return TokenDataset(saved["tokens"].astype(np.int32), saved["lengths"],
                                    canonical.properties, canonical.conditions)
    spelled, kept = respelled(data.train_smiles, canonical, data.vocab, seed, epoch)
    if kept:
        log.info("epoch %d: %d of %d molecules kept their prepared spelling", epoch + 1, kept,
                 len(spelled))
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, key=key, lengths=spelled.lengths,
                 tokens=spelled.tokens.astype(np.uint8 if len(data.vocab) < 256 else np.int32))
    return spelled


def _checksum(texts: Sequence[str]) -> int:
    """A CRC of a list of strings: tokens read back under another vocabulary or split would
    be other molecules."""
    return zlib.crc32("\n".join(texts).encode())
