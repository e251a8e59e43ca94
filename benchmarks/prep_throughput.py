"""Throughput of the prep stage on N molecules of MOSES train: molecules/s and peak memory.

    python benchmarks/prep_throughput.py --n 20000 --workers 2

The whole MOSES train set is ``molvae prep moses --out DIR``; its report.json has the timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from molvae.config import from_dict
from molvae.data.sources import read_moses
from molvae.io import write_table
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="molecules to prepare")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = write_table(read_moses("train").head(args.n), f"{tmp}/input.csv")
        config = from_dict(PrepConfig, {"inputs": [str(source)], "out": f"{tmp}/out",
                                        "workers": args.workers})
        start = time.perf_counter()
        result = prep(config)
        seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rate = args.n / seconds
    print(f"prep: {args.n} molecules, {args.workers} workers: {seconds:.1f} s, "
          f"{rate:.0f} molecules/s; peak RSS main {peak_mib:.0f} MiB, "
          f"worker {children_mib:.0f} MiB")
    print(f"kept {result.counts['kept']}, rejected {result.counts['rejected']}; "
          f"projected full MOSES train (1,584,663): {1_584_663 / rate / 60:.1f} min")


if __name__ == "__main__":
    main()
