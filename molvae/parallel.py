"""The one engine for per-molecule work: Dask, on a local cluster or an existing one.

Prep and scoring spend their time in RDKit, one molecule at a time. That work is cut into
chunks (which amortize the cost of shipping work to a worker) and mapped over a Dask cluster:

- by default a local cluster of worker processes on this machine, started for the stage and
  closed after it (nothing to set up);
- ``--cluster tcp://host:8786`` (or Dask's own ``DASK_SCHEDULER_ADDRESS``) runs the same stage
  on an existing cluster; its workers must have molvae installed and see the same files.

Small jobs (one chunk, or ``workers`` 1 without a cluster) run in this process: starting a
cluster costs seconds that a few hundred molecules do not repay. Dask was chosen over Ray by
measurement (``benchmarks/engines.py``): its local cluster starts in 1.5 s against Ray's 8 s
and holds about 550 MiB less; Ray's lower cost per task (1.5 ms against 3.8 ms) does not
count at pieces of thousands of molecules (seconds each). And dask dataframes do prep's
whole-set steps (the shuffle that de-duplicates across pieces) on the same cluster.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CLUSTER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 10.0
"""How long to try reaching a named scheduler: a live one answers in milliseconds, and Dask's
own default (30 s, then a traceback) made a typo in ``--cluster`` cost half a minute."""


def cluster_address(cluster: str | None) -> str | None:
    """The scheduler to use: ``cluster`` as given, else ``$DASK_SCHEDULER_ADDRESS``, else None
    (a local cluster). ``local`` asks for a local cluster even when the variable is set."""
    chosen = cluster or os.environ.get(CLUSTER_ENV) or None
    return None if chosen == "local" else chosen


class Engine:
    """A Dask client made on first use: a stage that turns out to be small never pays for
    starting a cluster. ``address`` None means a local cluster of ``workers`` processes."""

    def __init__(self, address: str | None, workers: int) -> None:
        self.address, self.workers = address, workers
        self._client: Any = None
        self._local: Any = None

    @property
    def distributed(self) -> bool:
        """Whether work goes to a cluster (one was named, or a local one was started)."""
        return self.address is not None or self._client is not None

    def client(self) -> Any:
        if self._client is None:
            import dask
            from dask.distributed import Client, LocalCluster  # seconds to import

            # the cluster narrates its start and stop at INFO, and every shuffle at WARNING
            logging.getLogger("distributed").setLevel(logging.WARNING)
            logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
            if self.address is None:
                with dask.config.set({"distributed.worker.multiprocessing-method":
                                      _start_method()}):
                    self._local = LocalCluster(n_workers=self.workers or os.cpu_count() or 1,
                                               threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=None)
                self._client = Client(self._local)
            else:
                self._client = connect(Client, self.address)
            log.info("Dask cluster %s: %d workers", self.address or "(local)",
                     len(self._client.scheduler_info()["workers"]))
        return self._client

    def scheduler(self) -> Any:
        """What dask collections should compute on: the cluster when there is one, else
        threads in this process (one thread when ``workers`` is 1)."""
        if self.distributed:
            return self.client()
        return "sync" if self.workers == 1 else "threads"

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._local is not None:
            self._local.close()
        self._client = self._local = None


def connect(client_type: Callable[..., Any], address: str) -> Any:
    """A Dask client of the scheduler at ``address``, or one ValueError naming the address,
    within :data:`CONNECT_TIMEOUT_S` (refused, unreachable, a bad address, not a scheduler)."""
    try:
        return client_type(address, timeout=CONNECT_TIMEOUT_S)
    except Exception as err:  # OSError, TimeoutError, garbage from a non-scheduler
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise ValueError(f"cannot connect to the Dask scheduler at {address} (--cluster or "
                         f"${CLUSTER_ENV}): {lines[0][:200]}") from None


def _start_method() -> str:
    """How local workers start: forked where the platform allows it (Linux), as the process
    pool before Dask did. A spawned worker re-imports the user's script, so a script that
    calls molvae at top level, without an ``if __name__ == "__main__"`` guard, would fail; a
    forked one also skips the seconds of importing RDKit and molvae again."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() and \
        multiprocessing.get_start_method(allow_none=True) in (None, "fork") else "spawn"


_active: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("molvae_engine",
                                                                        default=None)


@contextmanager
def engine(cluster: str | None = None, workers: int = 0) -> Iterator[Engine]:
    """The engine for the work inside the block; :func:`map_ordered` and :func:`map_chunks`
    use it. A stage run inside another stage's block (pipelines) shares the outer engine."""
    outer = _active.get()
    if outer is not None:
        yield outer
        return
    current = Engine(cluster_address(cluster), workers)
    token = _active.set(current)
    try:
        yield current
    finally:
        _active.reset(token)
        current.close()


def map_chunks(function: Callable[[list], list], items: Sequence, workers: int = 0,
               chunk_size: int = 1000, desc: str = "") -> list:
    """``function`` over ``items`` in chunks, on the engine, with a progress bar.

    ``function`` maps a list to a list of the same length; results keep the input order.
    """
    chunks = (list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size))
    results: list = []
    with tqdm(total=len(items), desc=desc, unit="mol") as bar:
        for out in map_ordered(function, chunks, workers):
            results.extend(out)
            bar.update(len(out))
    return results


def map_ordered(function: Callable[[Any], Any], inputs: Iterable[Any], workers: int = 0
                ) -> Iterator[Any]:
    """``function`` over ``inputs`` on the engine, results yielded in input order.

    ``inputs`` may be a lazy iterator (a file read in pieces): at most twice as many inputs as
    there are workers are out on the cluster at once, so memory stays flat however long the
    input is. A single input, or ``workers`` 1 without a named cluster, runs in this process.
    """
    with engine(None, workers) as current:
        inputs = iter(inputs)
        head = [item for item in (next(inputs, _END), next(inputs, _END)) if item is not _END]
        if not current.distributed and (len(head) < 2 or current.workers == 1):
            yield from map(function, itertools.chain(head, inputs))
            return
        client = current.client()
        limit = 2 * max(1, len(client.scheduler_info()["workers"]))
        pending: deque[Any] = deque()
        for item in itertools.chain(head, inputs):
            pending.append(client.submit(function, item, pure=False))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


_END = object()
