"""Throughput of the prep stage on N molecules of MOSES train, on 1 and 2 Dask workers, beside
a peer: the same per-molecule work over a plain ``ProcessPoolExecutor`` (the engine prep had
before Dask), which does no de-duplication, split or Parquet writing.

    python benchmarks/prep_throughput.py --n 50000 --workers 1 2
    python benchmarks/prep_throughput.py --n 50000 --properties none
    python benchmarks/prep_throughput.py --n 0          # the whole MOSES train set (1.58M)

Prints molecules/s, the scaling from 1 to 2 workers, and peak memory of this (driver)
process, which must stay flat as N grows: inputs are streamed in pieces.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from molvae import chem
from molvae.config import from_dict
from molvae.data.prep import Standardize, process_smiles
from molvae.data.sources import read_moses
from molvae.io import write_table
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep


def peer_chunk(raws: list, rules: Standardize) -> int:
    return len([process_smiles(raw, rules) for raw in raws])


def peer(smiles: list[str], workers: int, chunk: int, rules: Standardize) -> float:
    """Seconds for the per-molecule work alone over a process pool."""
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        done = sum(pool.map(functools.partial(peer_chunk, rules=rules),
                            [smiles[i:i + chunk] for i in range(0, len(smiles), chunk)]))
    assert done == len(smiles)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="molecules (0: all of MOSES train)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--properties", nargs="+", default=list(chem.PROPERTY_NAMES))
    parser.add_argument("--no-peer", action="store_true", help="skip the process-pool peer")
    args = parser.parse_args()
    properties = [] if args.properties == ["none"] else args.properties
    rules = Standardize(properties=tuple(properties))
    with tempfile.TemporaryDirectory() as tmp:
        if args.n:
            table = read_moses("train").head(args.n)
            source, n = str(write_table(table, f"{tmp}/input.csv")), len(table)
        else:
            source, n = "moses:train", 1_584_663
        print(f"{n} molecules of MOSES train, pieces of {args.chunk_size}, properties: "
              f"{', '.join(properties) or 'none'}")
        rates = {}
        for workers in args.workers:
            config = from_dict(PrepConfig, {"inputs": [source], "out": f"{tmp}/out{workers}",
                                            "workers": workers, "chunk_size": args.chunk_size,
                                            "properties": properties or ["none"]})
            start = time.perf_counter()
            result = prep(config)
            seconds = time.perf_counter() - start
            rates[workers] = n / seconds
            timings = json.loads((Path(config.out) / "report.json").read_text())["timings_s"]
            line = (f"molvae prep (Dask) {workers} worker(s): {seconds:.1f} s, "
                    f"{rates[workers]:.0f} molecules/s (standardize {timings['standardize_s']:.0f}"
                    f" s, de-duplicate+split+write {timings['dedupe_split_write_s']:.0f} s); "
                    f"kept {result.counts['kept']}")
            if not args.no_peer and args.n:
                pool = peer(table["smiles"].tolist(), workers, args.chunk_size, rules)
                line += f"; process pool alone {n / pool:.0f} molecules/s (molvae/pool " \
                        f"{pool / seconds:.2f})"
            print(line, flush=True)
        if len(rates) > 1:
            low, high = min(rates), max(rates)
            print(f"scaling {low} -> {high} workers: {rates[high] / rates[low]:.2f}x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (the driver): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
