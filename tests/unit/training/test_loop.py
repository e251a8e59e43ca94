"""Training: schedules, batching, learning, early stopping, exact resume, DDP."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.config import ConfigError, from_dict
from molvae.data.batching import epoch_batches, load_prepared
from molvae.model.store import load_model, model_from_state
from molvae.training.checkpoint import load_checkpoint
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model
from molvae.training.schedules import kl_weight, lr_factor

FAST = {"preset": "tiny", "epochs": 2, "batch_size": 8, "eval_samples": 5, "eval_molecules": 5,
        "log_model": False, "device": "cpu", "lr_warmup_steps": 2, "kl_warmup_steps": 5}


@pytest.fixture(scope="module")
def memorize_dir(prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 64 shortest training molecules, also the validation set (to measure memorization)."""
    out = tmp_path_factory.mktemp("memorize")
    train = pd.read_parquet(prepared_dir / "train.parquet")
    train = train.sort_values(["n_tokens", "smiles"]).head(64)
    for split in ("train", "val"):
        train.to_parquet(out / f"{split}.parquet")
    (out / "vocab.json").write_text((prepared_dir / "vocab.json").read_text())
    return out


def train(data: Path, out: Path, **options: object) -> TrainResult:
    config = from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out), **options})
    return train_model(config)


def test_kl_schedules() -> None:
    def beta(step: int, **options: object) -> float:
        config = from_dict(TrainConfig, {"data": "x", "beta_max": 0.5, "kl_warmup_steps": 10,
                                         "kl_cycle_steps": 20, **options})
        return kl_weight(step, config.kl_schedule, config.beta_max, config.kl_warmup_steps,
                         config.kl_cycle_steps)

    assert [beta(s) for s in (0, 5, 10, 100)] == [0.0, 0.25, 0.5, 0.5]
    assert [beta(s, kl_schedule="cyclical") for s in (5, 15, 20, 25)] == [0.25, 0.5, 0.0, 0.25]
    assert beta(0, kl_schedule="constant") == 0.5


def test_lr_warms_up_then_decays() -> None:
    factors = [lr_factor(s, warmup=4, total=20, schedule="cosine") for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[-1] == pytest.approx(0.05, abs=0.02)
    assert lr_factor(15, warmup=4, total=20, schedule="constant") == 1.0


def test_epoch_batches_bucket_by_length_and_shard_across_ranks() -> None:
    lengths = np.random.default_rng(0).integers(5, 60, size=103)
    batches = epoch_batches(lengths, 10, seed=1, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert batches == epoch_batches(lengths, 10, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 10, seed=1, epoch=1)
    assert all(list(lengths[b]) == sorted(lengths[b]) for b in batches)
    ranks = [epoch_batches(lengths, 10, seed=1, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 5
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_bad_config_values_are_named() -> None:
    with pytest.raises(ConfigError, match="preset"):
        from_dict(TrainConfig, {"data": "x", "preset": "huge"})
    with pytest.raises(ConfigError, match="kl_warmup_steps"):
        from_dict(TrainConfig, {"data": "x", "kl_schedule": "cyclical", "kl_warmup_steps": 30,
                                "kl_cycle_steps": 10})
    with pytest.raises(ConfigError, match="'learning_rate'"):
        from_dict(TrainConfig, {"data": "x", "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="word_dropout"):
        from_dict(TrainConfig, {"data": "x", "word_dropout": 1.5})


@pytest.mark.parametrize("spec", ["mixture", "mixture:0", "mixture:1.5", "student:3",
                                  "posteriors:4:0", "gaussian:2"])
def test_a_bad_prior_spec_names_prior(spec: str) -> None:
    with pytest.raises(ConfigError, match="prior: prior fit must be one of gaussian, mixture:K"):
        from_dict(TrainConfig, {"data": "x", "prior": spec})


def test_an_old_prior_components_key_reads_as_a_prior_spec(
        caplog: pytest.LogCaptureFixture) -> None:
    """``prior_components: K`` (before ``prior``) was K Gaussians: ``mixture:K``, one for 1."""
    with caplog.at_level(logging.WARNING, "molvae.config"):
        config = from_dict(TrainConfig, {"data": "x", "prior_components": 3}, where="train")
    assert config.prior == "mixture:3"
    assert "train: 'prior_components' is now called 'prior'" in caplog.text
    assert "'prior: mixture:3'" in caplog.text
    assert from_dict(TrainConfig, {"data": "x", "prior-components": "1"}).prior == "gaussian"
    with pytest.raises(ConfigError, match="train: prior_components must be >= 1, got 0"):
        from_dict(TrainConfig, {"data": "x", "prior_components": 0}, where="train")
    with pytest.raises(ConfigError, match="'prior_components' must be int"):
        from_dict(TrainConfig, {"data": "x", "prior_components": "mixture:2"})


@pytest.mark.parametrize(("spec", "scales"), [
    ("gaussian", (0, 8, 8)), ("mixture:2", (2, 8, 8)),
    ("mixture:100", (32, 8, 8)),  # at most half the 64 validation molecules
    ("posteriors:5:2", (5, 8))])
def test_the_prior_spec_reaches_the_model(memorize_dir: Path, tmp_path: Path, spec: str,
                                          scales: tuple[int, ...]) -> None:
    train(memorize_dir, tmp_path / "m", epochs=1, max_train=16, prior=spec)
    saved = load_model(tmp_path / "m", device="cpu")
    checkpointed = model_from_state(load_checkpoint(tmp_path / "m")["model"])
    for model in (saved, checkpointed):
        assert tuple(model.mixture_scales.shape) == scales
        assert len(model.mixture_weights) == scales[0]
        if scales[0]:
            assert float(model.mixture_weights.sum()) == pytest.approx(1.0)


def test_training_learns_and_writes_its_outputs(memorize_dir: Path, tmp_path: Path) -> None:
    result = train(memorize_dir, tmp_path / "m", epochs=10, batch_size=16,
                   hidden_dim=32, lr=0.03, kl_schedule="constant", beta_max=0.001)
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert result.progress.finished and len(history) == 10
    assert history["val_recon"].iloc[-1] < 0.85 * history["val_recon"].iloc[0]
    assert history["token_accuracy"].iloc[-1] > history["token_accuracy"].iloc[0] + 0.05
    for column in ("val_loss", "val_kl", "molecule_accuracy", "prior_validity",
                   "prior_uniqueness", "active_units"):
        assert column in history.columns
    assert history["prior_validity"].eq(1.0).all()
    best = history["val_loss"].idxmin()
    assert result.progress.best_epoch == history["epoch"][best]
    model = load_model(tmp_path / "m", device="cpu")
    assert model.config.hidden_dim == 32 and model.latent_dim == 8
    assert (tmp_path / "m" / "latent.json").is_file()


def test_resume_ends_with_the_same_weights(memorize_dir: Path, tmp_path: Path) -> None:
    options = {"max_train": 32, "word_dropout": 0.2, "free_bits": 0.01, "checkpoint_every": 3,
               "epochs": 3}
    whole = train(memorize_dir, tmp_path / "whole", **options)
    parts = tmp_path / "parts"
    assert not train(memorize_dir, parts, max_steps=5, **options).progress.finished
    assert load_checkpoint(parts)["progress"]["batch"] == 1  # stopped inside epoch 2
    train(memorize_dir, parts, max_steps=8, resume=True, **options)  # stops at an epoch's end
    resumed = train(memorize_dir, parts, resume=True, **options)
    assert resumed.progress.finished and resumed.progress.step == whole.progress.step == 12
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(parts)
    for key, value in a["model"]["state_dict"].items():
        assert torch.allclose(value, b["model"]["state_dict"][key], rtol=0, atol=0), key
    assert a["optimizer"]["state"][0]["exp_avg"].equal(b["optimizer"]["state"][0]["exp_avg"])
    assert whole.progress.history == resumed.progress.history


def test_early_stopping_and_resuming_a_finished_run(memorize_dir: Path, tmp_path: Path) -> None:
    result = train(memorize_dir, tmp_path / "m", lr=0.0, epochs=10, patience=2, max_train=16)
    assert result.progress.finished and result.progress.epoch == 3  # best at 1, then 2 bad
    again = train(memorize_dir, tmp_path / "m", lr=0.0, epochs=10, patience=2, max_train=16,
                  resume=True)
    assert again.progress.step == result.progress.step


def test_property_head_learns_standardized_targets(prepared_dir: Path, tmp_path: Path) -> None:
    train(prepared_dir, tmp_path / "m", epochs=1, property_head=["qed", "mw"])
    model = load_model(tmp_path / "m", device="cpu")
    table = pd.read_parquet(prepared_dir / "train.parquet")
    np.testing.assert_allclose(model.property_mean.numpy(), table[["qed", "mw"]].mean(),
                               rtol=1e-5)
    mu, _ = model.encode(table["smiles"].head(5).tolist())
    assert model.predict_properties(mu).shape == (5, 2)
    assert "val_property_mse" in pd.read_csv(tmp_path / "m" / "history.csv").columns
    with pytest.raises(ValueError, match="no_such_column"):
        train(prepared_dir, tmp_path / "n", property_head=["no_such_column"])


def test_tiny_model_memorizes_64_molecules(memorize_dir: Path, tmp_path: Path) -> None:
    train(memorize_dir, tmp_path / "m", epochs=150, batch_size=32, hidden_dim=64,
          latent_dim=16, embed_dim=16, lr=0.03, lr_warmup_steps=0, weight_decay=0.0,
          kl_schedule="constant", beta_max=0.001, patience=0, eval_samples=0,
          eval_molecules=1)  # exactness is measured below
    model = load_model(tmp_path / "m", device="cpu")
    smiles = pd.read_parquet(memorize_dir / "train.parquet")["smiles"].tolist()
    exact = np.mean([a == b for a, b in zip(model.reconstruct(smiles), smiles)])
    assert exact >= 0.95


def test_two_process_ddp_training_step(prepared_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "molvae.cli", "train", "--data", str(prepared_dir),
               "--out", str(tmp_path / "m"), "--preset", "tiny", "--epochs", "1",
               "--batch-size", "8", "--device", "cpu", "--eval-samples", "5", "--no-track",
               "--allow-degenerate", "-q", "--prior", "learned:4"]  # its grads are averaged too
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    progress = load_checkpoint(tmp_path / "m")["progress"]
    n_train = len(pd.read_parquet(prepared_dir / "train.parquet"))
    assert progress["step"] == (-(-n_train // 8) // 2) and progress["finished"]
    assert len(load_checkpoint(tmp_path / "m")["rng"]) == 2
    assert (tmp_path / "m" / "model.pt").is_file()
    assert len(load_model(tmp_path / "m").mixture_weights) == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_training_on_cuda(prepared_dir: Path, tmp_path: Path) -> None:
    result = train(prepared_dir, tmp_path / "m", device="cuda", epochs=2, log_every=1)
    assert result.progress.finished
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert np.isfinite(history["val_loss"]).all() and history["prior_validity"].eq(1.0).all()
    assert load_model(tmp_path / "m").device.type == "cuda"


def test_grus_compute_in_float32_under_bf16_autocast(prepared_dir: Path) -> None:
    """The GRUs run in float32 with the linear layers in bf16 (see molvae.model.vae.run_gru);
    autocast on CPU stands in for CUDA's, whose cuDNN RNN would otherwise run in float16."""
    from molvae.data.batching import DeviceTokens, load_prepared
    from molvae.model.loss import vae_loss
    from molvae.model.presets import build_model

    data = load_prepared(prepared_dir)
    model = build_model(data.vocab, "tiny").train()
    seen: list[tuple[bool, torch.dtype]] = []  # (autocast on inside the GRU, its state dtype)
    for gru in (model.encoder, model.decoder):
        gru.register_forward_hook(lambda module, args, out: seen.append(
            (torch.is_autocast_enabled("cpu"), out[1].dtype)))
    batch = DeviceTokens(data.train, torch.device("cpu")).batch(list(range(16)))
    assert (batch.lengths[:-1] >= batch.lengths[1:]).all()  # longest first
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch.tokens, batch.lengths)
        terms = vae_loss(out, batch, data.vocab.pad_id, 0.5, 0.0, 1.0)
    assert seen == [(False, torch.float32), (False, torch.float32)]
    assert out.logits.dtype == torch.bfloat16  # the output layer did run under autocast
    assert terms["loss"].dtype == torch.float32 and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_validation_codes_and_reconstructions_follow_the_split_order(
        prepared_dir: Path, tiny_model: Path) -> None:
    """Batches run longest first; the codes, and the decodings checked against the split's
    SMILES, must still be those of the split's rows in their own order."""
    from molvae.training.validation import measure_validation

    model = load_model(tiny_model, "cpu")
    data = load_prepared(prepared_dir)
    measured = measure_validation(model, data, torch.device("cpu"), beta=1.0,
                                  property_weight=0.0, batch_size=4, reconstruct=len(data.val),
                                  seed=0, amp=False)
    mu, _ = model.encode(data.val_smiles)
    assert np.allclose(measured.mu, mu, atol=1e-5)
    assert measured.reconstructed == model.decode(mu)
