"""Latent interpolation between MOSES test molecules: is a path through a model's latent space
valid, varied and smooth? It gives ``molvae interpolate`` (and ``molvae.api.interpolate``)
measured numbers, so models can be compared on them.

    python benchmarks/interpolation.py --model moses --pairs 100 --steps 10 --out runs/interp

Draws ``--pairs`` random pairs of MOSES test molecules (``--seed``), decodes ``--steps`` points
(both ends included) on the linear and the spherical latent path between each pair, through
the Python API, and reports per method:

* valid: the share of path points that decode to a molecule;
* distinct: distinct molecules per path (endpoints included);
* start / end: the share of paths whose first (last) point is the start (end) molecule, that
  is, the endpoints' greedy reconstruction from their posterior means;
* step similarity: the Tanimoto similarity (Morgan, radius 2, 2048 bits) of consecutive
  distinct molecules, averaged over a path, then over paths with two or more;
* monotone: the share of paths whose similarity to the start molecule never rises along the
  path, and the share where it never rises by more than ``--tolerance`` (nearly monotone).

Pairs with a molecule the model cannot encode (atoms it never saw) are counted and skipped.
With ``--out``, the paths go to OUT/paths.csv and the numbers to OUT/interpolation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import DataStructs

from molvae import api, chem
from molvae.data.sources import read_moses

METHODS = ("linear", "spherical")


class Fingerprints:
    """Morgan fingerprints (radius 2, 2048 bits) of SMILES, each computed once."""

    def __init__(self) -> None:
        self.cache: dict[str, DataStructs.ExplicitBitVect] = {}

    def similarity(self, a: str, b: str) -> float:
        for text in (a, b):
            if text not in self.cache:
                self.cache[text] = chem.morgan_fingerprint(chem.to_mol(text), 2, 2048)
        return float(DataStructs.TanimotoSimilarity(self.cache[a], self.cache[b]))


def path_measures(path: list[str | None], start: str, end: str, fingerprints: Fingerprints,
                  tolerance: float) -> dict[str, float]:
    """The numbers of one path of decoded SMILES (None: not a molecule) from ``start`` to
    ``end`` (canonical SMILES)."""
    valid = [s for s in path if s is not None]
    runs = [s for i, s in enumerate(valid) if i == 0 or s != valid[i - 1]]  # distinct steps
    steps = [fingerprints.similarity(a, b) for a, b in zip(runs, runs[1:])]
    to_start = np.array([fingerprints.similarity(start, s) for s in valid])
    rises = np.diff(to_start)
    return {"valid": len(valid) / len(path), "distinct": len(set(valid)),
            "start": float(path[0] == start), "end": float(path[-1] == end),
            "step_similarity": float(np.mean(steps)) if steps else float("nan"),
            "monotone": float((rises <= 1e-9).all()),
            "nearly_monotone": float((rises <= tolerance).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses", help="model folder or shipped name")
    parser.add_argument("--pairs", type=int, default=100, help="random MOSES test pairs")
    parser.add_argument("--steps", type=int, default=10, help="points per path, ends included")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=0.05,
                        help="rise in similarity to the start a nearly monotone path may have")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, help="folder for paths.csv and interpolation.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    test = read_moses("test")["smiles"].sample(n=2 * args.pairs, random_state=args.seed).tolist()
    pairs = list(zip(test[:args.pairs], test[args.pairs:]))
    model = api.load(args.model, "cpu")
    fingerprints, rows, skipped = Fingerprints(), [], 0
    started = time.perf_counter()
    for index, (a, b) in enumerate(pairs):
        start, end = chem.canonical_smiles(a), chem.canonical_smiles(b)
        try:
            paths = {m: api.interpolate(model, a, b, args.steps, m) for m in METHODS}
        except ValueError:  # atoms the model never saw
            skipped += 1
            continue
        for method, path in paths.items():
            rows.append({"pair": index, "method": method, "start_smiles": start,
                         "end_smiles": end, "path": " ".join(str(s) for s in path),
                         **path_measures(path, start, end, fingerprints, args.tolerance)})
    seconds = time.perf_counter() - started
    table = pd.DataFrame(rows)
    report = {"model": args.model, "pairs": args.pairs, "skipped": skipped, "steps": args.steps,
              "seed": args.seed, "tolerance": args.tolerance, "seconds": seconds,
              "methods": {m: group.drop(columns=["pair", "method", "start_smiles", "end_smiles",
                                                 "path"]).mean().to_dict()
                          for m, group in table.groupby("method")}}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out / "paths.csv", index=False)
        (args.out / "interpolation.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
