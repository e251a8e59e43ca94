"""One place where molvae takes over a signal for a while, and gives it back."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

Handler = Callable[[int, FrameType | None], None]


@contextmanager
def handling(signum: signal.Signals, handler: Handler) -> Iterator[None]:
    """Run ``handler`` on ``signum`` inside the block, restoring the previous handler after.

    Python lets only the main thread set handlers; elsewhere (a stage run from a worker
    thread, a test runner's thread) the block runs with the process's handler unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)
