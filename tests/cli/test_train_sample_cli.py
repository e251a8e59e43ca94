"""``molvae train`` then ``molvae sample`` from the command line, with their MLflow runs."""

from pathlib import Path

import pandas as pd
import pytest

from molvae import chem
from molvae.cli import main
from molvae.model.store import load_model
from molvae.tracking import local_model_dir

TINY = ["--preset", "tiny", "--epochs", "1", "--batch-size", "16", "--eval-samples", "20",
        "--eval-molecules", "5", "--log-every", "2", "--device", "cpu", "--allow-degenerate",
        "-q"]


def test_train_then_sample_end_to_end(prepared_dir: Path, mlflow_runs) -> None:
    assert main(["train", "--data", str(prepared_dir), "--out", "model", *TINY,
                 "--registered-name", "molvae-vae"]) == 0
    assert {"model.pt", "checkpoint.pt", "history.csv"} <= {p.name for p in Path("model").iterdir()}
    assert main(["sample", "--model", "model", "-n", "30", "--out", "samples.csv",
                 "--temperature", "0.8", "--seed", "5", "-q"]) == 0
    samples = pd.read_csv("samples.csv")
    assert list(samples.columns) == ["smiles", "valid"] and len(samples) == 30
    assert samples["valid"].all()
    assert all(chem.to_mol(s) is not None for s in samples["smiles"])

    train_run = mlflow_runs("train").iloc[0]
    assert train_run["status"] == "FINISHED" and train_run["params.preset"] == "tiny"
    for metric in ("loss", "val_loss", "token_accuracy", "molecule_accuracy", "prior_validity",
                   "active_units", "best_val_loss"):
        assert f"metrics.{metric}" in train_run.index, metric
    sample_run = mlflow_runs("sample").iloc[0]
    assert sample_run["metrics.n"] == 30 and sample_run["metrics.validity"] == 1.0
    assert 0 < sample_run["metrics.uniqueness"] <= 1

    import mlflow.pyfunc

    served = mlflow.pyfunc.load_model(f"runs:/{train_run['run_id']}/model")
    drawn = served.predict(pd.DataFrame({"n_samples": [4]}), params={"seed": 1})
    assert len(drawn) == 4 and all(chem.to_mol(s) is not None for s in drawn["smiles"])
    again = served.predict(pd.DataFrame({"n_samples": [4]}), params={"seed": 1})
    assert again["smiles"].tolist() == drawn["smiles"].tolist()
    standard = served.predict(pd.DataFrame({"n_samples": [4]}),
                              params={"seed": 1, "prior": "standard"})
    assert standard["smiles"].tolist() == load_model("model", device="cpu").sample(
        4, seed=1, prior="standard")
    latent = served.predict(pd.DataFrame({"smiles": ["CCO", "not a molecule"]}))
    assert latent.shape == (2, 8) and latent.iloc[1].isna().all()
    logged = load_model(local_model_dir(f"runs:/{train_run['run_id']}/model"), device="cpu")
    assert logged.sample(5, seed=2) == load_model("model", device="cpu").sample(5, seed=2)
    registered = load_model(local_model_dir("models:/molvae-vae/1"), device="cpu")
    assert registered.sample(5, seed=2) == logged.sample(5, seed=2)


def test_sampling_is_reproducible_and_resume_is_a_flag(prepared_dir: Path, mlflow_store) -> None:
    assert main(["train", "--data", str(prepared_dir), "--out", "m", "--no-track", *TINY,
                 "--max-steps", "2"]) == 0
    assert main(["train", "--data", str(prepared_dir), "--out", "m", "--no-track", *TINY,
                 "--resume", "--no-log-model"]) == 0
    for name in ("a.csv", "b.csv"):
        assert main(["sample", "--model", "m", "-n", "12", "--out", name, "--seed", "3",
                     "--batch-size", "5", "--no-track", "-q"]) == 0
    assert pd.read_csv("a.csv").equals(pd.read_csv("b.csv"))


def test_bad_options_give_one_clear_line(prepared_dir: Path, mlflow_store, capsys) -> None:
    Path("bad.yaml").write_text("data: somewhere\nlearning_rate: 0.1\n")
    assert main(["train", "--config", "bad.yaml", "--no-track"]) == 2
    assert "unknown key 'learning_rate'" in capsys.readouterr().err
    assert main(["train", "--data", str(prepared_dir), "--preset", "huge", "--no-track"]) == 2
    assert "preset must be one of" in capsys.readouterr().err
    assert main(["train", "--data", "no-such-folder", "--no-track"]) == 2
    assert "no-such-folder/vocab.json not found" in capsys.readouterr().err
    assert main(["sample", "--model", "no-model", "--no-track"]) == 2
    assert "no model.pt in no-model" in capsys.readouterr().err
    assert main(["sample", "--model", "x", "-n", "0", "--no-track"]) == 2
    assert "n must be >= 1" in capsys.readouterr().err


def test_the_fitted_prior_is_one_spec_and_the_old_flag_still_reads(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``--prior SPEC`` reaches the config as given; ``--prior-components K`` (its old
    spelling) reads as ``mixture:K``; a bad spec is one line naming ``prior``."""
    seen: list = []
    monkeypatch.setattr("molvae.cli.run_stage",
                        lambda name, config, track: seen.append(config))
    assert main(["train", "--data", "d", "--prior", "posteriors:64:2", "--no-track", "-q"]) == 0
    assert main(["train", "--data", "d", "--prior-components", "3", "--no-track", "-q"]) == 0
    assert [config.prior for config in seen] == ["posteriors:64:2", "mixture:3"]
    assert main(["train", "--data", "d", "--prior", "mixture:0", "--no-track", "-q"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("molvae train: error: train: prior: prior "
                                                   "fit must be one of gaussian, mixture:K")
