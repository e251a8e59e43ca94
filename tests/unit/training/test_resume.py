"""Resuming: extending a finished run, refusing options the checkpoint fixes, and the stage
refusing a collapsed model."""

import logging
from pathlib import Path

import pytest

from molvae.cli import main
from molvae.config import ConfigError, from_dict, to_dict
from molvae.model.store import load_model
from molvae.training.checkpoint import load_checkpoint, save_checkpoint
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model

# one torch thread: "auto" follows the load average, and runs compared bit for bit must
# sum in the same order
FAST = {"preset": "tiny", "epochs": 1, "batch_size": 8, "eval_samples": 4, "eval_molecules": 4,
        "log_model": False, "device": "cpu", "lr_warmup_steps": 2, "max_train": 16,
        "threads": 1}


def train(data: Path, out: Path, **options: object) -> TrainResult:
    return train_model(from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out),
                                               **options}))


def test_more_epochs_extend_a_finished_run_on_the_longer_lr_schedule(
        prepared_dir: Path, tmp_path: Path) -> None:
    once = train(prepared_dir, tmp_path / "m")
    assert once.progress.finished and once.progress.epoch == 1
    extended = train(prepared_dir, tmp_path / "m", epochs=2, resume=True)
    assert extended.progress.finished and extended.progress.epoch == 2
    assert extended.progress.step == 2 * once.progress.step
    assert [row["epoch"] for row in extended.progress.history] == [1, 2]
    whole = train(prepared_dir, tmp_path / "whole", epochs=2)
    lr = load_checkpoint(tmp_path / "m")["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(load_checkpoint(tmp_path / "whole")["optimizer"]
                               ["param_groups"][0]["lr"])
    assert whole.progress.step == extended.progress.step


def test_resume_refuses_options_that_fix_the_architecture(prepared_dir: Path,
                                                          tmp_path: Path) -> None:
    train(prepared_dir, tmp_path / "m", max_steps=1)
    fixed = r"changed preset \('tiny' -> 'small'\), latent_dim \(None -> 4\)"
    with pytest.raises(ConfigError, match=fixed):
        train(prepared_dir, tmp_path / "m", resume=True, latent_dim=4, preset="small")
    with pytest.raises(ConfigError, match="max_steps must be >= 1, got 0"):
        train(prepared_dir, tmp_path / "m", resume=True, max_steps=0)


def test_train_stage_fails_on_a_collapsed_latent_unless_allowed(
        prepared_dir: Path, tmp_path: Path, mlflow_store: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = ["train", "--data", str(prepared_dir), "--out", str(tmp_path / "m"), "--preset",
            "tiny", "--epochs", "1", "--batch-size", "32", "--eval-samples", "4",
            "--eval-molecules", "4", "--no-log-model", "--device", "cpu", "-q"]
    assert main(args) == 2
    error = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("molvae train: error:")]
    assert len(error) == 1 and "0 active units" in error[0] and "lower beta_max" in error[0]
    assert main([*args, "--resume", "--allow-degenerate"]) == 0


def test_sigterm_and_max_minutes_stop_with_a_checkpoint_that_resumes(
        prepared_dir: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    with pytest.raises(ConfigError, match="max_minutes must be > 0"):
        train(prepared_dir, tmp_path / "m", max_minutes=0)
    timed = train(prepared_dir, tmp_path / "timed", epochs=50, max_train=None, log_every=1,
                  max_minutes=1e-4)
    assert not timed.progress.finished and timed.progress.step == 1
    assert load_checkpoint(tmp_path / "timed")["progress"]["step"] == 1
    out = tmp_path / "signalled"
    command = [sys.executable, "-m", "molvae.cli", "train", "--data", str(prepared_dir),
               "--out", str(out), "--preset", "tiny", "--epochs", "100000", "--batch-size", "8",
               "--log-every", "1", "--eval-samples", "2", "--eval-molecules", "2",
               "--no-log-model", "--device", "cpu", "--no-track", "-q", "--threads", "1"]
    child = subprocess.Popen(command, env={**os.environ, "TQDM_DISABLE": "1"})
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:  # atomic
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == 0
    stopped = load_checkpoint(out)["progress"]
    assert not stopped["finished"] and stopped["step"] >= 1
    resumed = train(prepared_dir, out, epochs=100000, max_steps=stopped["step"] + 1,
                    resume=True, max_train=None, eval_samples=2, eval_molecules=2)
    assert resumed.progress.step == stopped["step"] + 1



def test_resume_restores_only_the_cuda_generators_this_host_has(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from molvae.training.checkpoint import restore_cuda_rng

    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: restored.append(index))
    restore_cuda_rng([torch.zeros(8, dtype=torch.uint8)] * 3)  # written on a 3-GPU host
    assert restored == [0]


def test_options_a_checkpoint_predates_count_as_their_defaults(
        caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint written before an option existed ran as its default: resuming with the
    default is no change, with another value it is one."""
    config = from_dict(TrainConfig, {"data": "d", "out": "o"})
    saved = {k: v for k, v in to_dict(config).items() if k not in ("latent", "codes",
                                                                   "property_head")}
    with caplog.at_level(logging.WARNING, "molvae.training.config"):
        config.check_resume(saved)
    assert "changed options" not in caplog.text
    from_dict(TrainConfig, {"data": "d", "out": "o", "lr": 0.5}).check_resume(saved)
    assert "changed options lr" in caplog.text


def test_a_checkpoint_written_with_prior_components_resumes(
        prepared_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A checkpoint whose stored config has the old ``prior_components`` (and no ``prior``)
    resumes; the prior, a refit of the trained model, may change on resume."""
    train(prepared_dir, tmp_path / "m", max_steps=1)
    state = load_checkpoint(tmp_path / "m")
    stored = state["train_config"]
    del stored["prior"]
    stored["prior_components"] = 1
    save_checkpoint(state, tmp_path / "m")
    with caplog.at_level(logging.WARNING, "molvae.training.config"):
        resumed = train(prepared_dir, tmp_path / "m", resume=True, prior="mixture:2")
    assert resumed.progress.finished
    assert "changed options" not in caplog.text
    assert len(load_model(tmp_path / "m", device="cpu").mixture_weights) == 2
    assert load_checkpoint(tmp_path / "m")["train_config"]["prior"] == "mixture:2"
