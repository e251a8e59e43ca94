"""The one chunked process map: a function over a list, in worker processes, with progress.

Prep and scoring both spend their time in RDKit, one molecule at a time; chunks amortize the
cost of sending work to a process, and results come back in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm


def map_chunks(function: Callable[[list], list], items: Sequence, workers: int = 0,
               chunk_size: int = 1000, desc: str = "") -> list:
    """``function`` over ``items`` in chunks, in worker processes, with a progress bar.

    ``function`` maps a list to a list of the same length; results keep the input order.
    ``workers`` 0 means all cores; one chunk or one worker runs in this process.
    """
    chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    workers = workers or os.cpu_count() or 1
    results: list = []
    with tqdm(total=len(items), desc=desc, unit="mol") as bar:
        if workers == 1 or len(chunks) <= 1:
            outputs: Iterable[list] = map(function, chunks)
            for out in outputs:
                results.extend(out)
                bar.update(len(out))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                for out in pool.map(function, chunks):
                    results.extend(out)
                    bar.update(len(out))
    return results
