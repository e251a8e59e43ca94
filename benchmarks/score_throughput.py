"""Throughput of ``molvae score``: molecules per second for the whole metric suite.

The "generated" sets are random samples of the MOSES train split, scored by default against
the MOSES test and test_scaffolds sets (novelty against MOSES train). The first run computes the
reference statistics and caches them (timed separately as the cold start); the timed runs
then use the cache, as repeated scoring does.

    python benchmarks/score_throughput.py --sizes 10000 30000
    python benchmarks/score_throughput.py --sizes 10000 --no-fcd --workers 2
    python benchmarks/score_throughput.py --sizes 10000 --reference ref.csv --train moses
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from molvae.config import from_dict
from molvae.data.sources import read_moses
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as run_score


def score_once(generated: Path, out: Path, args: argparse.Namespace) -> float:
    """Score one file; returns the wall time in seconds."""
    config = from_dict(ScoreConfig, {
        "generated": str(generated), "reference": args.reference, "train": args.train,
        "out": str(out), "fcd": args.fcd, "workers": args.workers, "device": args.device,
        "grid_size": 12})
    start = time.perf_counter()
    run_score(config)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 30000])
    parser.add_argument("--reference", default="moses",
                        help="'moses' (test + test_scaffolds), a prepared folder or a file")
    parser.add_argument("--train", default=None, help="training set for Novelty (see score)")
    parser.add_argument("--fcd", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    train = read_moses("train")["smiles"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples = {}
        for n in sorted({100, *args.sizes}):
            samples[n] = folder / f"generated_{n}.csv"
            train.sample(n=n, random_state=args.seed).to_frame().to_csv(samples[n], index=False)
        cold = score_once(samples[100], folder / "warmup", args)
        print(f"cold start (reference statistics of {args.reference}, cached afterwards; "
              f"100 molecules scored): {cold:.1f} s", flush=True)
        rows = []
        for n in args.sizes:
            seconds = score_once(samples[n], folder / f"out_{n}", args)
            rows.append({"molecules": n, "seconds": round(seconds, 1),
                         "molecules/s": round(n / seconds, 1)})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"cores: {os.cpu_count()}, fcd: {args.fcd}, device: {args.device}")


if __name__ == "__main__":
    main()
