"""Shipped models: found by name from every --model option, half precision, weights only."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.model import pretrained
from molvae.model.store import load_model, save_model
from molvae.tracking import local_model_dir


@pytest.fixture()
def shipped(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pretrained root holding the tiny test model in half precision as 'tinyship'."""
    monkeypatch.setattr(pretrained, "PRETRAINED_ROOT", tmp_path / "pretrained")
    save_model(load_model(tiny_model, "cpu"), tmp_path / "pretrained" / "tinyship",
               dtype=torch.float16)
    return tmp_path / "pretrained" / "tinyship"


def test_a_shipped_model_is_found_by_name(shipped: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    assert pretrained.pretrained_names() == ["tinyship"]
    assert local_model_dir("tinyship") == shipped
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tinyship").mkdir()  # a user's own folder of that name wins
    assert local_model_dir("tinyship") == Path("tinyship")
    assert local_model_dir("elsewhere") == Path("elsewhere")


def test_half_precision_weights_load_into_the_float32_network(shipped: Path,
                                                               tiny_model: Path) -> None:
    state = torch.load(shipped / "model.pt", weights_only=True)
    assert state["state_dict"]["to_mu.weight"].dtype == torch.float16
    full, half = load_model(tiny_model, "cpu"), load_model(shipped, "cpu")
    assert half.to_mu.weight.dtype == torch.float32
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    np.testing.assert_allclose(half.encode(smiles)[0], full.encode(smiles)[0], atol=2e-2)
    assert half.sample(20, seed=0) == half.sample(20, seed=0)


def test_the_shipped_moses_model_samples_from_the_cli(tmp_path: Path) -> None:
    from molvae.cli import main

    folder = pretrained.pretrained_dir("moses")
    assert folder is not None and (folder / "MODEL_CARD.md").is_file()
    assert (folder / "model.pt").stat().st_size < 15e6
    out = tmp_path / "s.csv"
    assert main(["sample", "--model", "moses", "-n", "20", "--out", str(out), "--device", "cpu",
                 "--no-track", "-q"]) == 0
    table = pd.read_csv(out)
    assert len(table) == 20 and table["valid"].all()
