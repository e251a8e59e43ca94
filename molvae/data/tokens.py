"""SELFIES tokens: conversion to/from SMILES, the vocabulary that maps tokens to ids, and
:func:`tokenize`, the one way a model reads a user's SMILES as token ids.

SELFIES is used because every token sequence decodes to a valid molecule, so a decoder
cannot produce syntactically broken output. The vocabulary is plain JSON (no pickles).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import selfies as sf

from molvae import chem
from molvae.io import write_text

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
UNSEEN = "tokens the model never saw"


def smiles_to_selfies(smiles: str) -> str | None:
    """SELFIES for a SMILES string, or None when the selfies encoder refuses it."""
    try:
        return sf.encoder(smiles)
    except sf.EncoderError:
        return None


def selfies_to_smiles(selfies: str) -> str | None:
    """Canonical RDKit SMILES for a SELFIES string (None if empty or not decodable)."""
    try:
        smiles = sf.decoder(selfies)
    except sf.DecoderError:
        return None
    if not smiles:
        return None
    return chem.canonical_smiles(smiles)


def unseen_reason(tokens: Sequence[str]) -> str:
    """Why a molecule with ``tokens`` outside a model's vocabulary is not encoded: they would
    silently become ``<unk>`` and the code would be some other molecule's."""
    return f"{UNSEEN}: {', '.join(tokens)}"


def split_selfies(selfies: str) -> list[str]:
    """Tokens of a SELFIES string, e.g. '[C][=O]' -> ['[C]', '[=O]']."""
    return list(sf.split_selfies(selfies))


@dataclass
class Vocab:
    """Token <-> id mapping. Ids 0..3 are the special tokens pad, bos, eos, unk.

    Attributes:
        tokens: every token, index = id.
        max_length: the longest molecule seen when building, in tokens (without bos/eos).
    """

    tokens: list[str]
    max_length: int = 0

    def __post_init__(self) -> None:
        if list(self.tokens[:len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"vocabulary must start with the special tokens {SPECIALS}")
        self.index = {t: i for i, t in enumerate(self.tokens)}

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, selfies_strings: Iterable[str]) -> Vocab:
        """Vocabulary of all tokens in ``selfies_strings``, most frequent first."""
        counts: Counter[str] = Counter()
        longest = 0
        for s in selfies_strings:
            toks = split_selfies(s)
            counts.update(toks)
            longest = max(longest, len(toks))
        return cls.from_counts(counts, longest)

    @classmethod
    def from_counts(cls, counts: Counter[str], longest: int) -> Vocab:
        """Vocabulary from token counts (most frequent first, ties by name), so pieces of a
        large data set can be counted apart and summed."""
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + ordered, max_length=longest)

    def encode(self, selfies: str, add_special: bool = True) -> list[int]:
        """Token ids of a SELFIES string, wrapped in bos/eos; unknown tokens map to unk (as
        training wants; code that encodes a user's molecule checks :meth:`unknown` first, as
        unk would stand for some other molecule)."""
        ids = [self.index.get(t, self.unk_id) for t in split_selfies(selfies)]
        return [self.bos_id, *ids, self.eos_id] if add_special else ids

    def unknown(self, selfies: str) -> list[str]:
        """The tokens of a SELFIES string outside the vocabulary, each once, in order."""
        return list(dict.fromkeys(t for t in split_selfies(selfies) if t not in self.index))

    def decode(self, ids: Sequence[int]) -> str:
        """SELFIES from ids: stops at the first eos, skips pad/bos/unk."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i >= len(SPECIALS):
                out.append(self.tokens[i])
        return "".join(out)

    def to_smiles(self, ids: Sequence[int]) -> str | None:
        """Canonical SMILES decoded from ids (None if the sequence is empty)."""
        return selfies_to_smiles(self.decode(ids))

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "max_length": self.max_length,
                "specials": {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK}}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        return cls(list(data["tokens"]), int(data.get("max_length", 0)))

    def save(self, path: str | Path) -> Path:
        return write_text(json.dumps(self.to_dict(), indent=1), path)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class Tokenized:
    """What :func:`tokenize` read, one entry per input SMILES in each list.

    Attributes:
        ids: token ids (bos ... eos), None where the row is unusable.
        smiles: canonical SMILES, None when the input is not a molecule or has no SELFIES.
        reasons: why a row is unusable (None when it is usable): not a molecule (and why),
            or tokens outside the vocabulary (then ``smiles`` and ``tokens`` are kept).
        tokens: the molecule's SELFIES tokens, empty when it has none.
    """

    ids: list[list[int] | None] = field(default_factory=list)
    smiles: list[str | None] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)


def tokenize(vocab: Vocab, smiles: Sequence[str | None]) -> Tokenized:
    """Token ids of each SMILES under ``vocab``, canonicalized first as the training data was.

    Every molecule a model reads from a user goes through here (encoding, the ELBO terms, the
    policy's memory, predictions), so they all agree on which molecules are usable and why.
    A molecule with tokens outside the vocabulary keeps its SMILES but gets no ids: as
    ``<unk>`` those tokens would make its code and scores some other molecule's.
    """
    read = Tokenized()
    for text in smiles:
        mol, reason = chem.parse_with_reason(text if isinstance(text, str) else None)
        name = chem.canonical_smiles(mol) if mol is not None and mol.GetNumAtoms() else None
        selfies = smiles_to_selfies(name) if name else None
        if mol is not None and selfies is None:
            reason = "no molecule" if name is None else "SELFIES encoding failed"
        unseen = vocab.unknown(selfies) if selfies else []
        if unseen:
            reason = unseen_reason(unseen)
        read.ids.append(vocab.encode(selfies) if selfies and not unseen else None)
        read.smiles.append(name if selfies else None)
        read.reasons.append(reason)
        read.tokens.append(split_selfies(selfies) if selfies else [])
    return read
