"""Training a VQ model: the VAE, then its code prior, both resumable; its options checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.config import ConfigError, from_dict
from molvae.model.store import load_model
from molvae.model.vq import VQVAE
from molvae.training import loop
from molvae.training.code_prior import CHECKPOINT
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model

# one torch thread: "auto" follows the load average, and runs compared bit for bit must
# sum in the same order
FAST = {"preset": "tiny", "latent": "vq", "codes": 4, "codebook_size": 16, "epochs": 1,
        "batch_size": 16, "lr": 0.01, "code_prior_epochs": 2, "code_prior_dim": 16,
        "eval_samples": 4, "eval_molecules": 4, "log_model": False, "device": "cpu",
        "threads": 1}


def train(data: Path, out: Path, **options: object) -> TrainResult:
    return train_model(from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out),
                                               **options}))


def test_vq_training_trains_the_vae_then_its_code_prior(tiny_vq_model: Path) -> None:
    history = pd.read_csv(tiny_vq_model / "history.csv")
    for column in ("val_commitment", "codebook_perplexity", "codes_used", "dead_codes"):
        assert column in history.columns
    assert "val_kl" not in history.columns
    assert history["codebook_perplexity"].between(1, 16).all()
    prior = pd.read_csv(tiny_vq_model / "code_prior.csv")
    assert list(prior["epoch"]) == [1, 2, 3]
    assert (prior["val_code_nll_bits"] > 0).all()
    model = load_model(tiny_vq_model, "cpu")
    assert isinstance(model, VQVAE) and bool(model.code_prior_trained)
    assert len(model.sample(5, seed=0)) == 5


def test_a_stopped_code_prior_resumes_to_the_uninterrupted_weights(
        prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = train(prepared_dir, tmp_path / "whole")
    assert whole.finished and whole.progress.code_prior["finished"]
    assert whole.headline()["prior_validity"] == whole.progress.code_prior["prior_validity"]
    original = loop.train_code_prior

    class StopAtStep:
        """Stops the prior step after its 3rd batch (the VAE's own stops untouched)."""

        def __init__(self) -> None:
            self.calls = 0

        def out_of_time(self) -> bool:
            self.calls += 1
            return self.calls == 3

    def stopped(config: TrainConfig, data: Any, device: Any, stop: Any, *rest: Any) -> dict:
        return original(config, data, device, StopAtStep(), *rest)

    monkeypatch.setattr(loop, "train_code_prior", stopped)
    cut = train(prepared_dir, tmp_path / "cut")
    assert cut.progress.finished and not cut.finished  # the VAE is done, its prior is not
    assert "stopped early" in cut.summary() and (tmp_path / "cut" / CHECKPOINT).is_file()
    with pytest.raises(ValueError, match="code prior is not trained"):
        load_model(tmp_path / "cut", "cpu").sample(2, seed=0)
    monkeypatch.setattr(loop, "train_code_prior", original)
    resumed = train(prepared_dir, tmp_path / "cut", resume=True)
    assert resumed.finished
    a, b = load_model(tmp_path / "whole", "cpu"), load_model(tmp_path / "cut", "cpu")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert pd.read_csv(tmp_path / "cut" / "code_prior.csv").equals(
        pd.read_csv(tmp_path / "whole" / "code_prior.csv"))


def test_a_stopped_vq_vae_resumes_to_the_uninterrupted_codebook(prepared_dir: Path,
                                                                tmp_path: Path) -> None:
    whole = train(prepared_dir, tmp_path / "whole", epochs=2, code_prior_epochs=1)
    cut = train(prepared_dir, tmp_path / "cut", epochs=2, code_prior_epochs=1, max_steps=3)
    assert not cut.progress.finished and cut.progress.code_prior is None
    resumed = train(prepared_dir, tmp_path / "cut", epochs=2, code_prior_epochs=1, resume=True)
    assert resumed.finished and resumed.progress.step == whole.progress.step
    a, b = load_model(tmp_path / "whole", "cpu"), load_model(tmp_path / "cut", "cpu")
    assert int(a.quantizer.restarts) > 0
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


def test_extending_the_vae_retrains_its_code_prior(prepared_dir: Path, tmp_path: Path) -> None:
    train(prepared_dir, tmp_path / "m")
    extended = train(prepared_dir, tmp_path / "m", epochs=2, resume=True)
    assert extended.finished and extended.progress.epoch == 2
    assert extended.progress.code_prior["epoch"] == 2  # afresh: the codes changed
    assert len(pd.read_csv(tmp_path / "m" / "code_prior.csv")) == 2


def test_vq_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="latent must be one of gaussian, vq"):
        from_dict(TrainConfig, {"data": str(tmp_path), "latent": "discrete"})
    with pytest.raises(ConfigError, match="no property head and no conditions"):
        from_dict(TrainConfig, {"data": str(tmp_path), "latent": "vq", "property_head": ["qed"]})
    with pytest.raises(ConfigError, match=r"codes \(5\) must divide latent_dim \(32\)"):
        from_dict(TrainConfig, {"data": str(tmp_path), "latent": "vq", "preset": "small",
                                "codes": 5})
    with pytest.raises(ConfigError, match="codebook_size must be >= 2"):
        from_dict(TrainConfig, {"data": str(tmp_path), "latent": "vq", "codebook_size": 1})
    config = from_dict(TrainConfig, {"data": str(tmp_path), "latent": "vq"})
    with pytest.raises(ConfigError, match=r"changed latent \('gaussian' -> 'vq'\)"):
        config.check_resume({"latent": "gaussian"})


def test_vq_trains_under_bf16_autocast_with_a_float32_codebook(prepared_dir: Path,
                                                               tmp_path: Path) -> None:
    """What --amp does on a GPU, on the CPU: the quantizer measures distances and moves the
    codebook in float32 whatever the encoder's dtype."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = train(prepared_dir, tmp_path / "m", code_prior_epochs=1)
    assert result.finished
    model = load_model(tmp_path / "m", "cpu")
    assert isinstance(model, VQVAE) and model.quantizer.codebook.dtype == torch.float32
    assert torch.isfinite(model.quantizer.codebook).all()
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert np.isfinite(history[["val_loss", "val_commitment"]]).all(None)
