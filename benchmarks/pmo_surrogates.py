"""How well each surrogate of the policy's GA screen ranks the molecules a run scored next.

    python benchmarks/pmo_surrogates.py RUN/calls.csv [MORE/calls.csv ...] --at 1000 4000 8000

A ``molvae optimize`` run's ``calls.csv`` (``benchmarks/pmo.py`` keeps one per run in its
``--workdir``) lists the molecules in the order they were scored. At each ``--at`` N, every
surrogate learns the first N and predicts the next ``--next`` molecules (mostly GA children, so
this is the screen's own task): printed are the Spearman correlation of prediction and score,
and how many of the ``--top`` best-predicted are in the true top decile (the screen keeps a
third of the children, so what matters is whether the best-predicted are truly good).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from molvae import chem
from molvae.optim.tanimoto_gp import TanimotoGP

SURROGATES: dict[str, Callable[[], TanimotoGP | chem.NeighbourScores]] = {
    "gp": lambda: TanimotoGP(),
    "gp-descriptors": lambda: TanimotoGP(descriptors=True),
    "neighbours": chem.NeighbourScores}


def ranking(calls: pd.DataFrame, at: int, following: int, top: int
            ) -> dict[str, tuple[float, float, float]]:
    """Per surrogate: (Spearman rho, share of its ``top`` best-predicted in the true top decile,
    seconds to learn and predict) for the molecules scored after the first ``at``."""
    ordered = calls.dropna(subset=["score"]).sort_values("oracle_call")
    smiles, scores = ordered["smiles"].tolist(), ordered["score"].to_numpy()
    future, truth = smiles[at:at + following], scores[at:at + following]
    out = {}
    for name, make in SURROGATES.items():
        started = time.perf_counter()
        surrogate = make()
        surrogate.add(smiles[:at], scores[:at])
        if isinstance(surrogate, TanimotoGP):
            predicted = surrogate.predict(future, kappa=0.0)  # the mean: the ranking itself
        else:
            predicted = surrogate.predict(future)
        seconds = time.perf_counter() - started
        best = np.argsort(-np.nan_to_num(predicted, nan=-np.inf))[:top]
        out[name] = (float(spearmanr(predicted, truth, nan_policy="omit").statistic),
                     float(np.mean(truth[best] >= np.quantile(truth, 0.9))), seconds)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calls", type=Path, nargs="+", help="calls.csv of optimize runs")
    parser.add_argument("--at", type=int, nargs="+", default=[1000, 4000, 8000],
                        help="molecules learnt before predicting (default: 1000 4000 8000)")
    parser.add_argument("--next", type=int, default=500, dest="following",
                        help="molecules predicted after them (default: 500)")
    parser.add_argument("--top", type=int, default=50, help="best-predicted checked (default: 50)")
    args = parser.parse_args(argv)
    rows = []
    for path in args.calls:
        calls = pd.read_csv(path)
        for at in args.at:
            if at + args.following > len(calls):
                continue
            for name, (rho, hits, seconds) in ranking(calls, at, args.following,
                                                      args.top).items():
                rows.append({"run": path.parent.name, "learnt": at, "surrogate": name,
                             "spearman": rho, f"top{args.top}_in_top_decile": hits,
                             "seconds": seconds})
                print(f"{path.parent.name} after {at}: {name} rho {rho:.3f}, "
                      f"top-{args.top} in top decile {hits:.2f} ({seconds:.1f} s)", flush=True)
    table = pd.DataFrame(rows)
    print("\nmean over runs and points:")
    print(table.groupby("surrogate")[["spearman", f"top{args.top}_in_top_decile", "seconds"]]
          .mean().round(3).to_string())


if __name__ == "__main__":
    main()
