"""--init-from: a run that starts from a trained model's weights with a new optimizer and
schedule, and refuses what would make those weights mean something else."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from molvae.cli import main
from molvae.config import ConfigError, from_dict
from molvae.data.tokens import Vocab
from molvae.model.pretrained import pretrained_dir
from molvae.model.store import load_model, model_from_state
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep
from molvae.training.checkpoint import load_checkpoint
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model

FAST = {"epochs": 1, "batch_size": 8, "eval_samples": 4, "eval_molecules": 4,
        "log_model": False, "device": "cpu", "lr_warmup_steps": 2, "max_train": 16}


def train(data: Path, out: Path, **options: object) -> TrainResult:
    return train_model(from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out),
                                               **options}))


def network_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trained parameters (not the fitted prior or the data statistics)."""
    return {k: v for k, v in model.state_dict().items()
            if k.startswith(("embedding", "encoder", "decoder", "to_", "latent_to"))}


def test_a_run_starts_from_the_models_weights_on_a_new_schedule(
        prepared_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    source = network_weights(load_model(tiny_model, device="cpu"))
    assert source, "the filter must select the network's weights"
    frozen = train(prepared_dir, tmp_path / "frozen", init_from=str(tiny_model), lr=0.0)
    trained = model_from_state(load_checkpoint(tmp_path / "frozen")["model"])
    assert all(torch.equal(source[k], v) for k, v in network_weights(trained).items())
    fresh = train(prepared_dir, tmp_path / "fresh", init_from=str(tiny_model))
    assert fresh.progress.step == frozen.progress.step == 2  # its own schedule from step 0
    moved = network_weights(model_from_state(load_checkpoint(tmp_path / "fresh")["model"]))
    assert any(not torch.equal(source[k], v) for k, v in moved.items())
    # the architecture is the model's: the tiny preset's, though the option says default
    assert load_model(tmp_path / "fresh").config.hidden_dim == \
        load_model(tiny_model).config.hidden_dim


def test_an_architecture_option_that_disagrees_is_named(prepared_dir: Path, tiny_model: Path,
                                                        tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"drop or match hidden_dim \(999 given, \d+ in the"):
        train(prepared_dir, tmp_path / "m", init_from=str(tiny_model), hidden_dim=999)
    with pytest.raises(ConfigError, match=r"property_head must be the model's \[\]"):
        train(prepared_dir, tmp_path / "m", init_from=str(tiny_model), property_head=["logp"])


def prepared(tmp_path: Path, name: str, smiles: list[str]) -> Path:
    source = tmp_path / f"{name}.csv"
    pd.DataFrame({"smiles": smiles}).to_csv(source, index=False)
    prep(from_dict(PrepConfig, {"inputs": [str(source)], "out": str(tmp_path / name),
                                "workers": 1, "val_fraction": 0.2, "test_fraction": 0.0}))
    return tmp_path / name


def test_molecules_in_fewer_tokens_are_read_in_the_models_vocabulary(
        prepared_dir: Path, tiny_model: Path, tmp_path: Path) -> None:
    own = pd.read_parquet(prepared_dir / "train.parquet")["smiles"].head(20).tolist()
    fewer = prepared(tmp_path, "fewer", own)
    vocab = load_model(tiny_model).vocab
    assert Vocab.from_dict(json.loads((fewer / "vocab.json").read_text())).tokens != vocab.tokens
    tuned = train(fewer, tmp_path / "m", init_from=str(tiny_model), max_train=None)
    assert tuned.progress.finished
    assert load_model(tmp_path / "m").vocab.tokens == vocab.tokens


def test_a_token_the_model_lacks_is_named(tiny_model: Path, tmp_path: Path) -> None:
    selenium = prepared(tmp_path, "selenium", ["C[Se]CCN", "CC[Se]C(=O)O", "c1cc[se]c1C",
                                               "CCO", "CCN"])
    with pytest.raises(ValueError, match=r"cannot read these molecules: 1 token\(s\) .*\[Se\]"):
        train(selenium, tmp_path / "m", init_from=str(tiny_model))
    chiral = prepared(tmp_path, "chiral", ["C[C@H](N)O", "C[C@@H](N)O", "CCO", "CCN", "CCC"])
    with pytest.raises(ValueError, match=r"knows no stereochemistry: prep them with --no-stereo"):
        train(chiral, tmp_path / "m", init_from=str(tiny_model))


def test_the_shipped_model_fine_tunes_on_a_users_molecules(
        prepared_dir: Path, tmp_path: Path, mlflow_store: str) -> None:
    args = ["train", "--data", str(prepared_dir), "--out", str(tmp_path / "m"),
            "--init-from", "moses", "--epochs", "1", "--batch-size", "40", "--no-log-model",
            "--device", "cpu", "-q"]
    assert main(args) == 0
    shipped, tuned = load_model(pretrained_dir("moses")), load_model(tmp_path / "m")
    assert tuned.vocab.tokens == shipped.vocab.tokens
    assert tuned.config == shipped.config
