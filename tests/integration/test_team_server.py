"""A team MLflow server for real: `mlflow server` with a SQL store and an artifact root on
loopback, a pipeline tracked over HTTP, its model registered and loaded back from the server."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from molvae.cli import main
from tests.conftest import FIXTURES
from tests.integration.servers import free_port, wait_until_up


@pytest.fixture
def team_server(tmp_path: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and a served artifact root."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, f"{base}/health", 120)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.mark.integration
def test_a_pipeline_tracks_registers_and_loads_through_a_team_server(
        team_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    work = tmp_path / "client"  # no local store may appear here: everything goes over HTTP
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "team")
    pipeline = work / "team.yaml"
    pipeline.write_text(yaml.safe_dump({"name": "team", "workdir": str(work / "runs"), "stages": {
        "prep": {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1},
        "train": {"preset": "tiny", "epochs": 1, "batch_size": 32, "eval_samples": 8,
                  "eval_molecules": 8, "device": "cpu", "threads": 1, "allow_degenerate": True,
                  "registered_name": "team-vae"},
        "sample": {"n": 12, "seed": 0, "device": "cpu"},
    }}))
    assert main(["run", str(pipeline), "-q"]) == 0
    assert not (work / "mlflow.db").exists() and not (work / "mlartifacts").exists()

    mlflow.set_tracking_uri(team_server)
    runs = mlflow.search_runs(experiment_names=["team"])
    assert sorted(runs["tags.stage"]) == ["pipeline", "prep", "sample", "train"]
    version = mlflow.MlflowClient().get_model_version("team-vae", "1")
    assert version.status == "READY"

    assert main(["sample", "--model", "models:/team-vae/1", "-n", "5", "--out",
                 str(work / "again.csv"), "--device", "cpu", "--no-track", "-q"]) == 0
    served = mlflow.pyfunc.load_model("models:/team-vae/1")
    assert len(served.predict({"n_samples": [3]}, params={"seed": 1})) == 3
    assert (tmp_path / "server-artifacts").is_dir()  # artifacts live on the server's side
