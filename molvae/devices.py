"""The one device rule (cuda > mps > cpu), CPU threads, and bf16 autocast.

Every stage that runs torch picks its device here, so ``--device auto`` means the same thing
for training, sampling, scoring and optimization.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch


def choose_device(name: str = "auto") -> torch.device:
    """The device to run on: ``auto`` picks cuda > mps > cpu; a named one must exist.

    Raises:
        ValueError: the named device is not a device, or is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device '{name}' requested but MPS is not available")
    return device


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a no-op elsewhere (CPUs here lack fast bf16)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_threads(requested: int = 0) -> int:
    """Torch's intra-op threads: ``requested`` when given, else the cores nobody else uses.

    torch defaults to one thread per core, and its threads wait on each other at every
    operation, so beside one busy process on 2 cores two threads run many times slower than
    one (docs/results.md has the measurement). So ``auto`` (0) takes the cores not taken by
    other running processes, at least one.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - busy_cores()))


def busy_cores(samples: int = 5, interval: float = 0.05) -> int:
    """Processes running right now besides this one (median of a few looks at
    ``/proc/loadavg``); the 1-minute load average where there is no /proc. The load average
    lags by a minute, so right after another job ends it would still count that job."""
    path = "/proc/loadavg"
    if not os.path.exists(path):
        return round(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    seen = []
    for i in range(samples):
        with open(path) as handle:
            seen.append(int(handle.read().split()[3].split("/")[0]) - 1)  # minus this one
        if i + 1 < samples:
            time.sleep(interval)
    return max(0, sorted(seen)[len(seen) // 2])
