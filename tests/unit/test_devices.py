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
    monkeypatch.setattr(os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert devices.cpu_threads(0) == 1  # one core busy elsewhere: one thread
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.0, 0.0))
    assert devices.cpu_threads(0) == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert devices.cpu_threads(0) == 1  # never zero
    assert devices.cpu_threads(3) == 3  # asked for: given
