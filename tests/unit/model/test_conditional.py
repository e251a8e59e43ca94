"""Conditional generation (CVAE): unconditional models unchanged, old models load, and
conditioning moves the samples' property in the requested direction."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molvae import chem
from molvae.config import ConfigError, from_dict
from molvae.data.batching import load_prepared, pad_batch
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.model.presets import build_model
from molvae.model.store import load_model, model_from_state, model_state
from molvae.training.config import TrainConfig
from molvae.training.loop import train_model
from tests.conftest import ASPIRIN, PARACETAMOL


@pytest.fixture(scope="module")
def vocab(prepared_dir: Path) -> Vocab:
    return Vocab.load(prepared_dir / "vocab.json")


def batch_of(vocab: Vocab, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch([vocab.encode(smiles_to_selfies(s)) for s in smiles], vocab.pad_id)


def test_unconditional_models_are_unchanged_and_old_ones_load(vocab: Vocab) -> None:
    torch.manual_seed(0)
    plain = build_model(vocab, "tiny").eval()
    assert plain.to_mu.in_features == 2 * 16 and plain.decoder.input_size == 8 + 8
    assert plain.latent_to_hidden.in_features == 8
    state = model_state(plain)
    # a model saved before conditions existed: no config key, no condition buffers
    del state["config"]["condition_names"]
    for key in ("condition_mean", "condition_std"):
        del state["state_dict"][key]
    old = model_from_state(state)
    assert old.config.condition_names == []
    assert old.sample(5, seed=3) == plain.sample(5, seed=3)
    with pytest.raises(ValueError, match="without conditions"):
        plain.sample(2, conditions={"qed": 0.5})


def test_conditional_model_reads_conditions_everywhere(vocab: Vocab) -> None:
    torch.manual_seed(0)
    model = build_model(vocab, "tiny", condition_names=["qed", "logp"]).eval()
    assert model.to_mu.in_features == 2 * 16 + 2 and model.decoder.input_size == 8 + 8 + 2
    assert model.latent_to_hidden.in_features == 8 + 2
    model.condition_mean.copy_(torch.tensor([0.6, 2.0]))
    model.condition_std.copy_(torch.tensor([0.1, 1.0]))
    tokens, lengths = batch_of(vocab, [ASPIRIN, PARACETAMOL])
    with pytest.raises(ValueError, match="conditioned on qed, logp"):
        model(tokens, lengths)
    out = model(tokens, lengths, torch.zeros(2, 2))
    assert out.logits.shape[:2] == (2, tokens.shape[1] - 1)
    # raw targets are standardized with the model's statistics; missing names take the mean
    assert torch.allclose(model.standardize_conditions({"qed": 0.8}, 3),
                          torch.tensor([[2.0, 0.0]] * 3))
    with pytest.raises(ValueError, match="unknown condition"):
        model.sample(2, conditions={"sa": 3.0})
    assert len(model.sample(4, seed=1, conditions={"qed": 0.9, "logp": 2.5})) == 4
    assert len(model.sample(2, seed=1, conditions=[[0.5, 1.0], [0.9, 3.0]])) == 2
    mu, _ = model.encode([ASPIRIN, "not a molecule"])  # own properties by default
    assert np.isfinite(mu[0]).all() and np.isnan(mu[1]).all()
    assert len(model.reconstruct([ASPIRIN])) == 1


def test_load_prepared_standardizes_conditions(prepared_dir: Path) -> None:
    data = load_prepared(prepared_dir, condition_names=["mw"])
    raw = pd.read_parquet(prepared_dir / "train.parquet")["mw"].to_numpy()
    assert data.condition_names == ["mw"]
    assert data.condition_mean[0] == pytest.approx(raw.mean(), rel=1e-5)
    assert abs(float(data.train.conditions.mean())) < 1e-4
    assert data.val.conditions.shape == (len(data.val), 1)
    assert load_prepared(prepared_dir).train.conditions is None


def test_resume_refuses_a_changed_condition(tmp_path: Path) -> None:
    config = from_dict(TrainConfig, {"data": str(tmp_path), "condition": ["qed"]})
    with pytest.raises(ConfigError, match="condition"):
        config.check_resume({"condition": ["logp"]})


def chains(folder: Path) -> Path:
    """A prepared folder of 84 chains (2-22 carbons, ending in nothing, O, N or F) with their
    molecular weight: a property with a strong signal (it is mostly length)."""
    smiles = [chem.canonical_smiles("C" * k + end) for k in range(2, 23)
              for end in ("", "O", "N", "F")]
    table = pd.DataFrame({"smiles": smiles, "selfies": [smiles_to_selfies(s) for s in smiles],
                          "mw": [chem.smiles_properties(s)["mw"] for s in smiles]})
    folder.mkdir()
    Vocab.build(table["selfies"]).save(folder / "vocab.json")
    table.to_parquet(folder / "train.parquet")
    table.iloc[::4].to_parquet(folder / "val.parquet")
    return folder


def test_conditioning_moves_the_property(tmp_path: Path) -> None:
    """A tiny CVAE asked for heavy molecules makes heavier ones than asked for light ones."""
    result = train_model(from_dict(TrainConfig, {
        "data": str(chains(tmp_path / "chains")), "out": str(tmp_path / "cvae"),
        "preset": "tiny", "condition": ["mw"], "epochs": 20, "batch_size": 16, "lr": 1e-2,
        "lr_warmup_steps": 10, "kl_warmup_steps": 20, "patience": 0, "eval_samples": 4,
        "eval_molecules": 4, "log_model": False, "device": "cpu", "seed": 0}))
    model = load_model(result.out, device="cpu")
    assert model.config.condition_names == ["mw"]
    mean, std = float(model.condition_mean[0]), float(model.condition_std[0])
    achieved = {}
    for side in (-1.0, 1.0):
        smiles = model.sample(100, seed=7, conditions={"mw": mean + side * std})
        achieved[side] = np.mean([chem.smiles_properties(s)["mw"] for s in smiles
                                  if chem.to_mol(s) is not None])
    assert achieved[1.0] > achieved[-1.0] + std, (achieved, mean, std)
