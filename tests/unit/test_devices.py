"""The one device rule and the CPU thread choice."""

import os

import pytest
import torch

from molvae import devices


def test_auto_is_the_cpu_here_and_a_missing_device_is_an_error() -> None:
    if not torch.cuda.is_available():
        assert devices.choose_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="CUDA is not available"):
            devices.choose_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        devices.choose_device("gpu0")


def test_threads_leave_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(devices, "busy_cores", lambda: 1)
    assert devices.cpu_threads(0) == 1  # one core busy elsewhere: one thread
    monkeypatch.setattr(devices, "busy_cores", lambda: 0)
    assert devices.cpu_threads(0) == 2
    monkeypatch.setattr(devices, "busy_cores", lambda: 9)
    assert devices.cpu_threads(0) == 1  # never zero
    assert devices.cpu_threads(3) == 3  # asked for: given


def test_busy_cores_sees_a_busy_process() -> None:
    import subprocess
    import sys

    idle = devices.busy_cores()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)
        assert devices.busy_cores() >= min(idle + 1, 1)
    finally:
        spinner.kill()
