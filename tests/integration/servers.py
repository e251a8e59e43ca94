"""Helpers for tests that start real servers on loopback."""

import socket
import subprocess
import time
import urllib.request

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(server: subprocess.Popen, url: str, seconds: float) -> None:
    """Poll ``url`` until it answers; fail with the server's stderr if it dies or times out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server at {url} did not start: "
                            f"{server.stderr.read().decode()[-4000:]}")
            time.sleep(0.5)
