"""How good a trained VAE is, in the numbers the literature reports for MOSES.

    python benchmarks/model_quality.py --model runs/demo/train-* --data runs/demo/prep-*
    python benchmarks/model_quality.py --model MODEL --data PREPARED --test moses -n 30000

Prints and returns: whole-molecule reconstruction accuracy (greedy decoding of the posterior
mean equals the canonical input) on the test molecules; and for ``n`` prior samples,
validity, unique@10k (or unique@n when fewer) and novelty against the training split; plus
encoding and sampling speed.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from molvae import chem
from molvae.data.sources import read_moses
from molvae.model.prior import PRIORS
from molvae.model.store import load_model
from molvae.scoring.metrics import novelty, unique_at_k
from molvae.tracking import local_model_dir


def test_smiles(data: str, test: str, limit: int, seed: int) -> list[str]:
    """Up to ``limit`` canonical test molecules: the prepared test split, or MOSES's."""
    if test == "moses":
        raw = read_moses("test")["smiles"]
        smiles = [s for s in map(chem.canonical_smiles, raw) if s]
    else:
        smiles = pd.read_parquet(f"{data}/test.parquet")["smiles"].tolist()
    rng = np.random.default_rng(seed)
    return [smiles[i] for i in rng.permutation(len(smiles))[:limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder or models:/NAME/VERSION")
    parser.add_argument("--data", required=True, help="prepared folder (its train split "
                        "is the novelty reference)")
    parser.add_argument("--test", default="prepared", choices=["prepared", "moses"],
                        help="test molecules for reconstruction")
    parser.add_argument("--reconstruct", type=int, default=10000, help="test molecules used")
    parser.add_argument("-n", type=int, default=30000, help="prior samples")
    parser.add_argument("--prior", default="fitted", choices=PRIORS, help="where z is drawn")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = load_model(local_model_dir(args.model), args.device)
    molecules = test_smiles(args.data, args.test, args.reconstruct, args.seed)
    started = time.perf_counter()
    rebuilt = model.reconstruct(molecules)
    rebuild_seconds = time.perf_counter() - started
    started = time.perf_counter()
    samples = model.sample(args.n, seed=args.seed, prior=args.prior)
    sample_seconds = time.perf_counter() - started
    canonical = [c for c in map(chem.canonical_smiles, samples) if c]
    k = min(10000, len(canonical))
    train = set(pd.read_parquet(f"{args.data}/train.parquet")["smiles"])
    unique = list(dict.fromkeys(canonical))
    result = {
        "reconstruction": float(np.mean([a == b for a, b in zip(rebuilt, molecules)])),
        "n_reconstructed": len(molecules),
        "validity": len(canonical) / max(len(samples), 1),
        f"unique@{k}": unique_at_k(canonical, k) if k else None,
        "novelty": novelty(unique, train)[0] if unique else None,
        "n_samples": len(samples),
        "prior": args.prior,
        "mean_heavy_atoms": float(np.mean([chem.to_mol(s).GetNumHeavyAtoms() for s in canonical]))
        if canonical else None,
        "reconstruct_molecules_per_s": len(molecules) / rebuild_seconds,
        "sample_molecules_per_s": len(samples) / sample_seconds,
        "device": str(model.device),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
