"""What randomized-SMILES augmentation would cost and give a SELFIES model: speed, vocabulary
coverage, length and variety of SELFIES written from random SMILES of prepared molecules.

    python benchmarks/randomized_selfies.py --data runs/campaign/prepared --molecules 20000

Augmentation writes each molecule from a different random SMILES every epoch
(:func:`molvae.data.respell.random_selfies`, what ``molvae train --randomize-smiles`` uses),
then SELFIES, so the model learns a ring's tokens from every starting atom. On
a CPU campaign it has to be cheap beside training (``per_core_mol_s``: molecules per second
on one core, and the minutes one core needs for the whole training split), must stay inside
the prepared vocabulary and length (``in_vocab``, ``within_max_length``), must write the same
molecule back (``round_trip``), and should give each molecule several spellings
(``distinct_of_k``: distinct SELFIES among ``--draws`` random ones).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, RDLogger

from molvae.data.respell import random_selfies
from molvae.data.tokens import Vocab, selfies_to_smiles, split_selfies


def measure(smiles: Sequence[str], canonical: Sequence[str], vocab: Vocab, draws: int,
            train_size: int, seed: int = 0) -> dict[str, float]:
    """The module docstring's numbers for these molecules (``canonical``: their SELFIES)."""
    start = time.perf_counter()
    written = []
    for i, text in enumerate(smiles):
        written.append(random_selfies(text, draws, seed + i))
    rate = len(smiles) * draws / (time.perf_counter() - start)
    flat = [s for row in written for s in row]
    tokens = [split_selfies(s) if s else None for s in flat]
    round_trip = [s is not None and selfies_to_smiles(s) == Chem.CanonSmiles(original)
                  for row, original in zip(written, smiles, strict=True) for s in row]
    lengths = np.array([len(t) for t in tokens if t])
    canonical_lengths = np.array([len(split_selfies(s)) for s in canonical])
    return {
        "molecules": len(smiles), "draws": draws, "per_core_mol_s": rate,
        "minutes_per_epoch_one_core": train_size / rate / 60,
        "encoded": float(np.mean([t is not None for t in tokens])),
        "in_vocab": float(np.mean([s is not None and not vocab.unknown(s) for s in flat])),
        "within_max_length": float(np.mean(lengths <= vocab.max_length)),
        "round_trip": float(np.mean(round_trip)),
        "distinct_of_k": float(np.mean([len({s for s in row if s}) for row in written])),
        "mean_length": float(lengths.mean()), "max_length": int(lengths.max()),
        "canonical_mean_length": float(canonical_lengths.mean()),
        "canonical_max_length": int(canonical_lengths.max()),
        "vocab_max_length": vocab.max_length,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a prepared folder")
    parser.add_argument("--molecules", type=int, default=20000)
    parser.add_argument("--draws", type=int, default=5, help="random SMILES per molecule")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    RDLogger.DisableLog("rdApp.*")
    train = pd.read_parquet(args.data / "train.parquet", columns=["smiles", "selfies"])
    picked = train.sample(min(args.molecules, len(train)), random_state=args.seed)
    vocab = Vocab.load(args.data / "vocab.json")
    row = measure(picked["smiles"].tolist(), picked["selfies"].tolist(), vocab, args.draws,
                  len(train), args.seed)
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
