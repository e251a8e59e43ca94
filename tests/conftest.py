"""Shared fixtures: named test molecules, a prepared data set, an isolated MLflow store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TQDM_DISABLE", "1")
torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than they save

FIXTURES = Path(__file__).parent / "fixtures"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PARACETAMOL = "CC(=O)Nc1ccc(O)cc1"
INVALID = "C1CC(C"


@pytest.fixture(scope="session")
def molecules_csv() -> Path:
    """100 drug-like molecules from MOSES (column ``smiles``)."""
    return FIXTURES / "molecules.csv"


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory, molecules_csv: Path) -> Path:
    """The 100 fixture molecules through ``prep`` (random split 80/10/10), built once."""
    from molvae.config import from_dict
    from molvae.stages.prep import PrepConfig
    from molvae.stages.prep import run as prep

    out = tmp_path_factory.mktemp("prepared")
    prep(from_dict(PrepConfig, {"inputs": [str(molecules_csv)], "out": str(out), "workers": 1}))
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    """A tiny VAE trained for one epoch on the fixture molecules, for stages that need a model
    but not a good one."""
    from molvae.config import from_dict
    from molvae.training.config import TrainConfig
    from molvae.training.loop import train_model

    out = tmp_path_factory.mktemp("tiny_model")
    train_model(from_dict(TrainConfig, {
        "data": str(prepared_dir), "out": str(out), "preset": "tiny", "epochs": 1,
        "batch_size": 32, "eval_samples": 8, "eval_molecules": 8, "log_model": False,
        "device": "cpu"}))
    return out


@pytest.fixture(scope="session")
def tiny_vq_model(tmp_path_factory: pytest.TempPathFactory, prepared_dir: Path) -> Path:
    """A tiny VQ-VAE (4 codes of 16 kinds) with its code prior, trained briefly on the
    fixture molecules."""
    from molvae.config import from_dict
    from molvae.training.config import TrainConfig
    from molvae.training.loop import train_model

    out = tmp_path_factory.mktemp("tiny_vq_model")
    train_model(from_dict(TrainConfig, {
        "data": str(prepared_dir), "out": str(out), "preset": "tiny", "latent": "vq",
        "codes": 4, "codebook_size": 16, "epochs": 2, "batch_size": 16, "lr": 0.01,
        "code_prior_epochs": 3, "code_prior_dim": 16, "eval_samples": 8, "eval_molecules": 8,
        "log_model": False, "device": "cpu"}))
    return out


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A private MLflow store in a temporary working folder; returns its tracking URI."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def mlflow_runs(mlflow_store: str) -> Callable[[str | None], pd.DataFrame]:
    """``mlflow_runs(stage=None)`` lists the runs in the private store (optionally one stage's)."""
    import mlflow

    def runs(stage: str | None = None) -> pd.DataFrame:
        mlflow.set_tracking_uri(mlflow_store)
        found = mlflow.search_runs(experiment_names=["molvae"])
        if stage is not None and len(found):
            found = found[found["tags.stage"] == stage]
        return found

    return runs
