"""Throughput of ``molvae score`` next to MOSES's own ``get_all_metrics`` on the same molecules.

The "generated" sets are random samples of the MOSES train split, scored by default against
the MOSES test and test_scaffolds sets (novelty against MOSES train). The first run fills an
empty statistics cache (timed as the cold start: MOSES's shipped statistics converted, KL
samples described); the timed runs then use the cache, as repeated scoring does. Each set is
then scored by MOSES's ``get_all_metrics`` (molsets 0.3.1, from the cached wheel, in its own
process, with the small compatibility shims modern RDKit/pandas need), and every metric is
printed side by side with the two wall times and their ratio.

    python benchmarks/score_throughput.py --sizes 3400
    python benchmarks/score_throughput.py --sizes 10000 --no-moses --workers 2
    python benchmarks/score_throughput.py --sizes 10000 --reference ref.csv --train moses
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pandas as pd

from molvae.config import from_dict
from molvae.data.sources import moses_wheel, read_moses
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as run_score


def score_once(generated: Path, out: Path, cache: Path, args: argparse.Namespace
               ) -> tuple[float, dict]:
    """Score one file with molvae; returns (wall seconds, metrics)."""
    config = from_dict(ScoreConfig, {
        "generated": str(generated), "reference": args.reference, "train": args.train,
        "out": str(out), "fcd": args.fcd, "workers": args.workers, "device": args.device,
        "grid_size": 12, "cache_dir": str(cache)})
    start = time.perf_counter()
    result = run_score(config)
    return time.perf_counter() - start, result.metrics


def moses_child(generated: Path, out: Path, workers: int, device: str) -> None:
    """Runs in a child process: MOSES's ``get_all_metrics`` on ``generated``, timed."""
    import types

    import numpy as np

    sys.modules["rdkit.six"] = types.SimpleNamespace(iteritems=lambda d: iter(d.items()))
    pd.DataFrame.append = lambda self, other, sort=False: pd.concat([self, other], sort=sort)
    np.float = float  # removed in numpy 1.24; MOSES 0.3.1 predates that
    from moses.metrics.metrics import get_all_metrics

    gen = pd.read_csv(generated)["smiles"].tolist()
    start = time.perf_counter()
    found = get_all_metrics(gen, n_jobs=workers, device=device)
    seconds = time.perf_counter() - start
    out.write_text(json.dumps({"seconds": seconds,
                               "metrics": {k: float(v) for k, v in found.items()}}))


def moses_once(generated: Path, folder: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """MOSES's ``get_all_metrics`` in a fresh process (its own pool, no shared caches)."""
    package = folder / "molsets"
    if not package.is_dir():
        with zipfile.ZipFile(moses_wheel()) as wheel:
            wheel.extractall(package)
    out = folder / f"moses_{generated.stem}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(package), *sys.path])}
    # benchmarks/ goes last: its moses.py would hide the moses package
    code = ("import sys; sys.path.append(sys.argv[1]); from score_throughput import "
            "moses_child; from pathlib import Path; moses_child(Path(sys.argv[2]), "
            "Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5])")
    subprocess.run([sys.executable, "-W", "ignore", "-c", code, str(Path(__file__).parent),
                    str(generated), str(out), str(args.workers or os.cpu_count()),
                    "cpu" if args.device == "auto" else args.device], check=True, env=env)
    found = json.loads(out.read_text())
    return found["seconds"], found["metrics"]


def side_by_side(ours: dict, theirs: dict) -> pd.DataFrame:
    """Every MOSES metric with molvae's value and the absolute difference."""
    rows = [{"metric": name, "MOSES": value, "molvae": ours.get(name),
             "abs diff": None if ours.get(name) is None else abs(ours[name] - value)}
            for name, value in theirs.items()]
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3400])
    parser.add_argument("--reference", default="moses",
                        help="'moses' (test + test_scaffolds), a prepared folder or a file")
    parser.add_argument("--train", default=None, help="training set for Novelty (see score)")
    parser.add_argument("--fcd", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--moses", action=argparse.BooleanOptionalAction, default=True,
                        help="also run MOSES's get_all_metrics (only with --reference moses)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="statistics cache (default: a new empty one, so cold is cold)")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    train = read_moses("train")["smiles"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = args.cache_dir or folder / "cache"
        samples = {}
        for n in sorted({100, *args.sizes}):
            samples[n] = folder / f"generated_{n}.csv"
            train.sample(n=n, random_state=args.seed).to_frame().to_csv(samples[n], index=False)
        print(f"load average at start: {os.getloadavg()}", flush=True)
        cold, _ = score_once(samples[100], folder / "warmup", cache, args)
        print(f"cold start (reference statistics of {args.reference} into {cache}, cached "
              f"afterwards; 100 molecules scored): {cold:.1f} s", flush=True)
        rows = []
        for n in args.sizes:
            seconds, ours = score_once(samples[n], folder / f"out_{n}", cache, args)
            row = {"molecules": n, "molvae s": round(seconds, 1),
                   "molecules/s": round(n / seconds, 1)}
            print(f"molvae, warm: {row}, load average: {os.getloadavg()}", flush=True)
            if args.moses and args.reference == "moses":
                moses_seconds, theirs = moses_once(samples[n], folder, args)
                row.update({"MOSES s": round(moses_seconds, 1),
                            "speed-up": round(moses_seconds / seconds, 2)})
                print(side_by_side(ours, theirs).to_string(index=False), flush=True)
            rows.append(row)
            print(row, f"load average: {os.getloadavg()}", flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"cores: {os.cpu_count()}, fcd: {args.fcd}, device: {args.device}")


if __name__ == "__main__":
    main()
