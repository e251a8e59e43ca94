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

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit import Chem
from tqdm.auto import tqdm

from molvae.data.batching import TokenDataset
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.io import atomic_path

SPELLINGS_FILE = "spellings.npz"  # the current epoch's, in the run folder


def random_selfies(mol: Chem.Mol, draws: int, seed: int) -> list[str | None]:
    """SELFIES of ``draws`` random SMILES of a kekulized molecule, reproducible from
    ``seed``."""
    return [smiles_to_selfies(s) for s in
            Chem.MolToRandomSmilesVect(mol, draws, randomSeed=seed, kekuleSmiles=True)]


def kekulized(smiles: str) -> Chem.Mol | None:
    """The molecule with Kekulé bonds (what SELFIES writes), or None if RDKit refuses it."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Chem.KekulizeException:
        return None
    return mol


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
        mol = kekulized(text)
        written = random_selfies(mol, 1, int(seeds[row]))[0] if mol is not None else None
        if written is None or vocab.unknown(written):
            ids.append(canonical.tokens[row, :canonical.lengths[row]].tolist())
            kept += 1
        else:
            ids.append(vocab.encode(written))
    return TokenDataset.from_sequences(ids, vocab.pad_id, canonical.properties,
                                       canonical.conditions), kept


def epoch_spellings(folder: Path, smiles: Sequence[str], canonical: TokenDataset,
                    vocab: Vocab, seed: int, epoch: int) -> tuple[TokenDataset, int]:
    """:func:`respelled`, read from ``folder/spellings.npz`` when it holds this epoch's (of
    this seed and split size), else computed and written there for a resume to read."""
    path = folder / SPELLINGS_FILE
    key = np.array([seed, epoch, len(smiles)])
    if path.is_file():
        with np.load(path, allow_pickle=False) as saved:
            if np.array_equal(saved["key"], key):
                return TokenDataset(saved["tokens"].astype(np.int32), saved["lengths"],
                                    canonical.properties, canonical.conditions), \
                    int(saved["kept"])
    spelled, kept = respelled(smiles, canonical, vocab, seed, epoch)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, key=key, tokens=spelled.tokens.astype(np.uint8 if len(vocab) < 256
                                                               else np.int32),
                 lengths=spelled.lengths, kept=np.array(kept))
    return spelled, kept
