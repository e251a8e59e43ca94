"""Concurrent runs: one `molvae run` per working folder, one creator of a fresh MLflow store."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from molvae.cli import main
from molvae.pipeline import LOCK
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from filelock import FileLock
with FileLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_run_in_the_same_workdir_fails_fast_or_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    workdir = tmp_path / "runs"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "workdir": str(workdir), "stages": {
        "prep": {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1}}}))
    workdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(workdir / LOCK), "3"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["run", str(path), "--no-track", "-q"]) == 2
        error = capsys.readouterr().err
        assert f"another `molvae run` is using {workdir}" in error
        monkeypatch.setenv("MOLVAE_LOCK_TIMEOUT", "60")
        assert main(["run", str(path), "--no-track", "-q"]) == 0  # waits for the holder
        assert holder.poll() == 0
    finally:
        holder.kill()
        holder.wait()


def test_two_processes_create_a_fresh_mlflow_store_together(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    code = "from molvae.tracking.runs import configure; configure()"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert (tmp_path / "mlflow.db").is_file()
    assert not (tmp_path / "mlflow.db.lock").exists()  # nothing left in the user's folder
