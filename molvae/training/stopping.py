"""When a training run stops early: the :class:`StopRequest` the loop asks after every step."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from molvae.signals import handling
from molvae.training.distributed import Distributed

log = logging.getLogger(__name__)


class StopRequest:
    """When training should stop early: at ``max_steps``, after ``max_minutes``, or on SIGTERM.

    A stop always writes a checkpoint first, so a time-boxed or signalled run (a CPU campaign
    run between working sessions, a preempted cloud job) loses no work and ``--resume``
    continues it."""

    def __init__(self, max_steps: int | None, max_minutes: float | None,
                 check_every: int) -> None:
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.deadline: float | None = None
        self.check_every = check_every
        self.signalled = False

    def start_clock(self) -> None:
        """Start counting ``max_minutes`` (when training starts, after the data is loaded)."""
        if self.max_minutes is not None:
            self.deadline = time.monotonic() + 60 * self.max_minutes

    def __call__(self, step: int, job: Distributed) -> bool:
        """Whether to stop after ``step``. The clock and the signal are read every
        ``check_every`` steps and rank 0 decides, so all ranks of a DDP job stop together."""
        if self.max_steps is not None and step >= self.max_steps:
            return True
        if step % self.check_every:
            return False
        return bool(job.from_main(self.out_of_time()))

    def out_of_time(self) -> bool:
        """Whether ``max_minutes`` have passed or SIGTERM came (this process's view)."""
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return self.signalled or late

    @contextmanager
    def on_sigterm(self) -> Iterator[None]:
        """Turn SIGTERM into a stop at the next step while training runs (main thread only)."""

        def handle(signum: int, frame: object) -> None:
            log.warning("SIGTERM: stopping after this step (a checkpoint is written)")
            self.signalled = True

        with handling(signal.SIGTERM, handle):
            yield
