"""``molvae encode / decode / interpolate / predict / anomaly``: the model's other uses, run
through the real CLI on real files (``--no-track``, except one run recorded in MLflow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from molvae import chem
from molvae.cli import main
from molvae.data.batching import pad_batch
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.latent.encode import model_fingerprint
from molvae.latent.regressors import save_regressor
from molvae.model.presets import build_model
from molvae.model.store import load_model, save_model
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

VERBS = ("encode", "decode", "interpolate", "predict", "anomaly")
# clearly not ZINC drug-like molecules: other elements, salts, metals, polyynes, perhalides
OUT_OF_DISTRIBUTION = [
    "C[Si](C)(C)O[Si](C)(C)O[Si](C)(C)C", "OB(O)c1ccccc1B(O)O", "O=P(O)(O)OP(=O)(O)OP(=O)(O)O",
    "[Na+].[Cl-]", "C#CC#CC#CC#CC#CC#C", "FC(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)F",
    "ClC(Cl)(Cl)C(Cl)(Cl)Cl", "[Se][Se][Se]", "C[Sn](C)(C)C", "I", "[Fe]", "S=S=S"]


@pytest.fixture
def molecules(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    pd.DataFrame({"smiles": [ASPIRIN, INVALID, PARACETAMOL],
                  "name": ["aspirin", "broken", "paracetamol"]}).to_csv(path, index=False)
    return path


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside score), ties counting half."""
    diff = outside[:, None] - inside[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([verb, "--help"])
    assert exit_.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_encode_keeps_every_row_and_decode_inverts_it(tiny_model: Path, molecules: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "latents.parquet"
    assert main(["encode", str(molecules), "CCO", "--model", str(tiny_model), "--out", str(out),
                 "--no-track", "-q"]) == 0
    table = pd.read_parquet(out)
    model = load_model(tiny_model, "cpu")
    mu_cols = [f"mu_{i}" for i in range(model.latent_dim)]
    assert table["input"].tolist() == [ASPIRIN, INVALID, PARACETAMOL, "CCO"]
    assert table["name"].tolist()[:3] == ["aspirin", "broken", "paracetamol"]
    assert table.loc[1, mu_cols + ["neg_elbo", "nll"]].isna().all()
    assert "syntax" in table.loc[1, "reason"] and table["reason"].isna().sum() == 3
    np.testing.assert_allclose(table.loc[[0, 2], mu_cols].to_numpy(),
                               model.encode([ASPIRIN, PARACETAMOL])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table["neg_elbo"], table["nll"] + table["kl"])
    assert (table.loc[[0, 2, 3], [f"sigma_{i}" for i in range(model.latent_dim)]] > 0).all().all()

    assert main(["decode", str(out), "--model", str(tiny_model), "--out",
                 str(tmp_path / "back.sdf"), "--no-track", "-q"]) == 0
    back = chem.read_sdf(tmp_path / "back.sdf")
    assert len(back) == 4 and back["name"].tolist()[:3] == ["aspirin", "broken", "paracetamol"]
    expected = model.decode(model.encode([ASPIRIN, PARACETAMOL, "CCO"])[0])
    assert [back.loc[i, "smiles"] for i in (0, 2, 3)] == expected
    assert back.loc[1, "smiles"] == "" and "missing latent" in back.loc[1, "reason"]

    edited = pd.DataFrame(np.zeros((2, model.latent_dim)),
                          columns=[f"z_{i}" for i in range(model.latent_dim)])
    edited.to_csv(tmp_path / "edited.csv", index=False)
    assert main(["decode", str(tmp_path / "edited.csv"), "--model", str(tiny_model), "--out",
                 str(tmp_path / "x.csv.gz"), "--no-track", "-q"]) == 0
    decoded = pd.read_csv(tmp_path / "x.csv.gz")
    assert decoded["smiles"].tolist() == model.decode(np.zeros((2, model.latent_dim)))


def test_unknown_output_extensions_and_missing_columns_are_errors(
        tiny_model: Path, molecules: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(molecules), "--model", str(tiny_model), "--out",
                 str(tmp_path / "x.xlsx"), "--no-track", "-q"]) == 2
    err = capsys.readouterr().err
    assert "unknown extension" in err and ".parquet" in err and ".sdf" in err
    assert not (tmp_path / "x.xlsx").exists()
    assert main(["decode", str(molecules), "--model", str(tiny_model), "--out",
                 str(tmp_path / "y.csv"), "--no-track", "-q"]) == 2
    assert "expected columns z_0" in capsys.readouterr().err
    assert main(["encode", "no_such_file.csv", "--model", str(tiny_model), "--no-track"]) == 2
    assert "neither a file nor a SMILES" in capsys.readouterr().err


def test_interpolate_writes_both_paths_a_grid_and_property_curves(tiny_model: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "interp"
    assert main(["interpolate", ASPIRIN, PARACETAMOL, "--model", str(tiny_model), "--steps",
                 "4", "--out", str(out), "--table-format", "parquet", "--no-track", "-q"]) == 0
    path = pd.read_parquet(out / "path.parquet")
    assert path.groupby("method")["step"].apply(list).to_dict() == {
        "linear": [0, 1, 2, 3], "spherical": [0, 1, 2, 3]}
    model = load_model(tiny_model, "cpu")
    ends = model.decode(model.encode([ASPIRIN, PARACETAMOL])[0])
    for _, part in path.groupby("method"):
        assert part["smiles"].iloc[[0, -1]].tolist() == ends
    assert path["valid"].all() and path[["qed", "logp", "sa"]].notna().all().all()
    for image in ("grid.png", "properties.png"):
        assert (out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_from_saved_regressors(tiny_model: Path, molecules: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from sklearn.linear_model import Ridge

    model = load_model(tiny_model, "cpu")
    rng = np.random.default_rng(0)
    z = rng.standard_normal((30, model.latent_dim))
    ridge = Ridge().fit(z, z[:, 0] * 2 + 1)
    save_regressor(ridge, tmp_path / "regress" / "regressors", "qed",
                   {"regressor": "ridge", "model_hash": model_fingerprint(model)})
    out = tmp_path / "pred.csv"
    assert main(["predict", str(molecules), "--model", str(tiny_model), "--regress",
                 str(tmp_path / "regress"), "--out", str(out), "--no-track", "-q"]) == 0
    table = pd.read_csv(out)
    mu = model.encode([ASPIRIN, PARACETAMOL])[0]
    np.testing.assert_allclose(table.loc[[0, 2], "pred_qed"], ridge.predict(mu), rtol=1e-5)
    assert np.isnan(table.loc[1, "pred_qed"]) and table["name"].tolist()[1] == "broken"
    assert main(["predict", str(molecules), "--model", str(tiny_model), "--no-track"]) == 2
    assert "no property head" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fitted_model(prepared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny VAE fitted (60 full-batch Adam steps) to 40 training molecules: enough to learn
    what drug-like SELFIES look like."""
    vocab = Vocab.load(prepared_dir / "vocab.json")
    train = pd.read_parquet(prepared_dir / "train.parquet")["smiles"].tolist()[:40]
    tokens, lengths = pad_batch([vocab.encode(smiles_to_selfies(s)) for s in train],
                                vocab.pad_id)
    torch.manual_seed(0)
    model = build_model(vocab, "tiny").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(60):
        out = model(tokens, lengths)
        nll = F.cross_entropy(out.logits.transpose(1, 2), tokens[:, 1:],
                              ignore_index=vocab.pad_id, reduction="sum") / len(tokens)
        kl = 0.5 * (out.mu.pow(2) + out.logvar.exp() - 1 - out.logvar).sum(1).mean()
        optimizer.zero_grad()
        (nll + 0.1 * kl).backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("fitted")
    save_model(model.eval(), folder)
    return folder


def test_anomaly_scores_out_of_distribution_molecules_higher(
        fitted_model: Path, prepared_dir: Path, tmp_path: Path) -> None:
    held_out = pd.concat([pd.read_parquet(prepared_dir / f"{s}.parquet") for s in ("val", "test")])
    held_out[["smiles"]].to_csv(tmp_path / "inside.csv", index=False)
    pd.DataFrame({"smiles": OUT_OF_DISTRIBUTION}).to_csv(tmp_path / "outside.smi", index=False,
                                                         header=False)
    scores = {}
    for name in ("inside.csv", "outside.smi"):
        out = tmp_path / f"{name}.parquet"
        assert main(["anomaly", str(tmp_path / name), "--model", str(fitted_model), "--out",
                     str(out), "--reference", str(prepared_dir), "--no-track", "-q"]) == 0
        scores[name] = pd.read_parquet(out)
    inside, outside = scores["inside.csv"], scores["outside.smi"]
    assert len(inside) == 20 and len(outside) == len(OUT_OF_DISTRIBUTION)
    np.testing.assert_allclose(inside["score"], inside["nll_per_token"])
    assert outside["score"].median() > inside["score"].max()  # measured: 4.5 vs 2.3 nats
    assert auroc(inside["score"].to_numpy(), outside["score"].to_numpy()) > 0.9  # measured 0.996
    assert outside["percentile"].median() > inside["percentile"].median()


def test_a_verb_is_an_mlflow_run(tiny_model: Path, molecules: Path, mlflow_runs) -> None:
    assert main(["anomaly", str(molecules), "--model", str(tiny_model), "--out", "scores.csv",
                 "-q"]) == 0
    run = mlflow_runs("anomaly").iloc[0]
    assert run["status"] == "FINISHED" and run["metrics.n"] == 3
    assert run["metrics.n_scored"] == 2 and run["params.score"] == "nll_per_token"
    artifacts = Path(run["artifact_uri"].removeprefix("file://"))
    assert (artifacts / "scores.csv").is_file()
