"""Which distributed engine for prep's per-molecule work: process pool vs Dask vs Ray, measured.

The same work for each engine: standardize N MOSES train SMILES with
:func:`molvae.data.prep.process_smiles`, in chunks of ``--chunk-size``, results gathered in
input order. Engines, each at every ``--workers`` count W:

- ``pool``: :class:`concurrent.futures.ProcessPoolExecutor` (fork), the baseline;
- ``dask``: ``distributed.LocalCluster`` (W worker processes, 1 thread each) + ``Client.map``;
- ``ray``: ``ray.init(num_cpus=W)`` and a ``@ray.remote`` chunk function (skipped, with a
  line saying so, when ``import ray`` fails).

Per engine and W it prints: startup seconds (start the pool/cluster and run one tiny real task
per worker), wall seconds for the N molecules, molecules/s, the driver's peak RSS
(``getrusage``: a running maximum over the whole invocation) and the RSS of the driver's
process tree (workers included) after the run, and mol/s relative to ``pool`` at the same W.
Then, per engine, the per-task overhead: 200 no-op tasks on a list of 1 SMILES each,
submitted at once, seconds per task. Load average is printed at start and end; on a shared
machine the numbers move with it.

    OMP_NUM_THREADS=1 python benchmarks/engines.py --n 20000 --chunk-size 2000 \\
        --workers 1 2 --engines pool dask ray
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from molvae.data import prep
from molvae.data.sources import read_moses

ChunkFunction = Callable[[list], list]
OVERHEAD_TASKS = 200


def noop(chunk: list) -> list:
    """The per-task overhead probe: returns its chunk untouched."""
    return chunk


def standardize_chunk(raws: list, rules: prep.Standardize) -> list[tuple]:
    """One chunk through :func:`molvae.data.prep.process_smiles` with prep's default rules."""
    return [prep.process_smiles(raw, rules) for raw in raws]


def _call(function: ChunkFunction, chunk: list) -> list:
    """Ray's remote body: ``ray.remote`` wants a plain function, not a partial."""
    return function(chunk)


class Engine:
    """Start W workers, map a chunk function over chunks in input order, stop."""

    name = ""

    def start(self, workers: int) -> None:
        raise NotImplementedError

    def map(self, function: ChunkFunction, chunks: Sequence[list]) -> list[list]:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class PoolEngine(Engine):
    name = "pool"

    def start(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(max_workers=workers,
                                        mp_context=multiprocessing.get_context("fork"))

    def map(self, function: ChunkFunction, chunks: Sequence[list]) -> list[list]:
        return list(self.pool.map(function, chunks))

    def stop(self) -> None:
        self.pool.shutdown(wait=True)


class DaskEngine(Engine):
    name = "dask"

    def start(self, workers: int) -> None:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
        self.client = Client(self.cluster)

    def map(self, function: ChunkFunction, chunks: Sequence[list]) -> list[list]:
        futures = self.client.map(function, list(chunks), pure=False)
        return self.client.gather(futures)

    def stop(self) -> None:
        self.client.close()
        self.cluster.close()


class RayEngine(Engine):
    name = "ray"

    def start(self, workers: int) -> None:
        import ray

        self.ray = ray
        ray.init(num_cpus=workers, include_dashboard=False)
        self.remote = ray.remote(num_cpus=1)(_call)

    def map(self, function: ChunkFunction, chunks: Sequence[list]) -> list[list]:
        ref = self.ray.put(function)
        return self.ray.get([self.remote.remote(ref, chunk) for chunk in chunks])

    def stop(self) -> None:
        self.ray.shutdown()


ENGINES: dict[str, type[Engine]] = {"pool": PoolEngine, "dask": DaskEngine, "ray": RayEngine}


def available(name: str) -> bool:
    module = {"pool": "concurrent.futures", "dask": "distributed", "ray": "ray"}[name]
    if importlib.util.find_spec(module) is None:
        return False
    try:
        __import__(module)
    except Exception:  # a broken install counts as absent
        return False
    return True


def tree_rss_mib() -> float:
    """RSS of this process and all its descendants (workers, raylet, nannies), MiB."""
    try:
        import psutil
    except ImportError:
        return float("nan")
    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kept_smiles(chunks: list[list]) -> list:
    return [record[0] for chunk in chunks for record in chunk]


def measure(engine: Engine, workers: int, function: ChunkFunction, chunks: list[list],
            probe: str) -> dict[str, Any]:
    """Startup, the timed run, per-task overhead and shutdown for one engine at W workers."""
    tiny = [[probe]] * workers
    t0 = time.perf_counter()
    engine.start(workers)
    engine.map(function, tiny)
    startup = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = engine.map(function, chunks)
    seconds = time.perf_counter() - t0
    tree = tree_rss_mib()
    t0 = time.perf_counter()
    engine.map(noop, [[probe]] * OVERHEAD_TASKS)
    per_task = (time.perf_counter() - t0) / OVERHEAD_TASKS
    t0 = time.perf_counter()
    engine.stop()
    shutdown = time.perf_counter() - t0
    return {"startup": startup, "seconds": seconds, "per_task": per_task, "shutdown": shutdown,
            "peak": peak_rss_mib(), "tree": tree, "kept": kept_smiles(results),
            "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="MOSES train molecules")
    parser.add_argument("--chunk-size", type=int, default=2000, help="molecules per task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts W to try")
    parser.add_argument("--engines", nargs="+", choices=list(ENGINES),
                        default=list(ENGINES), help="engines, first one is the baseline")
    args = parser.parse_args()

    print(f"loadavg at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"cpus {os.cpu_count()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    versions = []
    for name, module in (("dask", "distributed"), ("ray", "ray")):
        if name in args.engines and available(name):
            versions.append(f"{module} {__import__(module).__version__}")
    print("versions: " + (", ".join(versions) or "-"))
    engines = []
    for name in args.engines:
        if available(name):
            engines.append(name)
        else:
            print(f"{name}: skipped (import {name} fails)")

    smiles = read_moses("train")["smiles"].head(args.n).tolist()
    chunks = [smiles[i:i + args.chunk_size] for i in range(0, len(smiles), args.chunk_size)]
    function = functools.partial(standardize_chunk, rules=prep.Standardize())
    print(f"{len(smiles)} molecules in {len(chunks)} chunks of {args.chunk_size}; "
          f"driver RSS before engines {peak_rss_mib():.0f} MiB")
    print(f"{'engine':<6} {'W':>2} {'start s':>8} {'run s':>7} {'mol/s':>7} {'vs pool':>7} "
          f"{'drv peak MiB':>12} {'tree MiB':>8} {'stop s':>6} {'load1':>5} same")

    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for workers in args.workers:
        for name in engines:
            row = measure(ENGINES[name](), workers, function, chunks, smiles[0])
            rows[name, workers] = row
            rate = len(smiles) / row["seconds"]
            base = rows.get((engines[0], workers))
            ratio = rate / (len(smiles) / base["seconds"]) if base else float("nan")
            same = "yes" if base is None or row["kept"] == base["kept"] else "NO"
            print(f"{name:<6} {workers:>2} {row['startup']:>8.2f} {row['seconds']:>7.2f} "
                  f"{rate:>7.0f} {ratio:>7.2f} {row['peak']:>12.0f} {row['tree']:>8.0f} "
                  f"{row['shutdown']:>6.2f} {row['load']:>5.2f} {same}", flush=True)

    for name in engines:
        parts = ", ".join(f"W={w} {rows[name, w]['per_task'] * 1e3:.2f} ms"
                          for w in args.workers)
        print(f"per-task overhead {name}: {OVERHEAD_TASKS} no-op tasks, {parts} per task")
    print(f"loadavg at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
