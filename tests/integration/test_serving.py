"""The registered model served by ``mlflow models serve``, asked over HTTP on loopback."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from molvae import chem
from molvae.cli import main
from tests.integration.servers import free_port, wait_until_up


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_registered_model_serves_samples_and_latents(prepared_dir: Path, mlflow_store) -> None:
    assert main(["train", "--data", str(prepared_dir), "--out", "model", "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "16", "--eval-samples", "10",
                 "--eval-molecules", "5", "--threads", "1", "--registered-name", "served-vae",
                 "--allow-degenerate", "-q"]) == 0
    port = free_port()
    bin_dir = Path(sys.executable).parent  # mlflow runs uvicorn from the environment's bin
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{Path.cwd() / 'mlflow.db'}",
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_cli = bin_dir / "mlflow"
    server = subprocess.Popen(
        [str(mlflow_cli), "models", "serve", "-m", "models:/served-vae/1", "--env-manager",
         "local", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(server, f"{base}/ping", 90)
        request = {"dataframe_split": {"columns": ["n_samples"], "data": [[3]]},
                   "params": {"seed": 7, "temperature": 0.8}}
        drawn = post(f"{base}/invocations", request)
        smiles = [row["smiles"] for row in drawn["predictions"]]
        assert len(smiles) == 3 and all(chem.to_mol(s) is not None for s in smiles)
        again = post(f"{base}/invocations", request)
        assert [row["smiles"] for row in again["predictions"]] == smiles  # params reach it
        latent = post(f"{base}/invocations",
                      {"dataframe_split": {"columns": ["smiles"], "data": [["CCO"]]}})
        assert len(latent["predictions"][0]) == 8
    finally:
        server.terminate()
        server.wait(timeout=30)
