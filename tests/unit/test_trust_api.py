"""Trust, round three (issue 25, items 3, 4 and part of 13): atoms a model never saw are
refused or flagged per row instead of silently becoming ``<unk>``; the Python API reads a lone
SMILES string as one molecule and refuses non-finite latents; an infinite latent value is
called infinite, not missing."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import molvae
from molvae.cli import main
from molvae.data.tokens import Vocab
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

SELENIUM = "CC[Se]C"  # valid, but no model trained on drug-like sets has seen [Se]
UNSEEN = "tokens the model never saw: [Se]"


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> SelfiesVAE:
    return load_model(tiny_model, "cpu")


def test_vocab_names_its_unknown_tokens_once_each() -> None:
    vocab = Vocab(["<pad>", "<bos>", "<eos>", "<unk>", "[C]"])
    assert vocab.unknown("[C][Se][C][Se][Te]") == ["[Se]", "[Te]"]
    assert vocab.unknown("[C][C]") == []


def test_the_shipped_model_refuses_to_interpolate_from_an_atom_it_never_saw() -> None:
    """The issue's case: ``CC[Se]C`` used to interpolate as an unrelated molecule."""
    shipped = molvae.load("moses", device="cpu")
    assert "[Se]" not in shipped.vocab.index
    with pytest.raises(ValueError, match=re.escape(f"molecule {SELENIUM} has {UNSEEN}")):
        molvae.interpolate(shipped, SELENIUM, "CCO", steps=3)
    with pytest.raises(ValueError, match=r"\[Se\]"):
        molvae.interpolate(shipped, "CCO", SELENIUM, steps=3, method="linear")


def test_interpolate_verb_exits_2_naming_the_unknown_tokens(tiny_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    out = tmp_path / "path"
    code = main(["interpolate", ASPIRIN, SELENIUM, "--model", str(tiny_model), "--steps", "3",
                 "--out", str(out), "--device", "cpu", "--no-track", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"molvae interpolate: error: molecule {SELENIUM} has {UNSEEN}"]
    assert not (out / "path.csv").exists()


def test_optimize_start_with_an_unseen_atom_stops_before_any_oracle_call(
        tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The guard in the optimizer's setup could never fire: ``<unk>`` has a finite code."""
    out = tmp_path / "optimize"
    code = main(["optimize", "--model", str(tiny_model), "--start", SELENIUM, "--budget", "4",
                 "--method", "random", "--out", str(out), "--device", "cpu", "--no-track", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and f"start: molecule {SELENIUM} has {UNSEEN}" in err
    assert not (out / "calls.csv").exists()


def test_rows_with_unseen_atoms_are_kept_with_nan_latents_and_a_reason(model: SelfiesVAE
                                                                        ) -> None:
    """No code for such a molecule (it would be another's); its likelihood is exactly 0, so
    its ELBO scores are +inf (the most unusual), not the score of the ``<unk>`` molecule."""
    table = molvae.elbo(model, [SELENIUM, ASPIRIN, INVALID], latents=True)
    assert table.loc[0, "smiles"] == SELENIUM and table.loc[0, "reason"] == UNSEEN
    assert np.isposinf(table.loc[0, ["neg_elbo", "nll", "nll_per_token"]].to_numpy(float)).all()
    assert table.loc[0, ["kl", "mu_0", "sigma_0"]].isna().all()
    assert table.loc[0, "unknown_tokens"] == 1 and table.loc[1, "unknown_tokens"] == 0
    assert pd.isna(table.loc[1, "reason"]) and np.isfinite(table.loc[1, "neg_elbo"])
    z = molvae.encode(model, [SELENIUM, ASPIRIN])
    assert np.isnan(z[0]).all() and np.isfinite(z[1]).all()
    assert molvae.reconstruct(model, [SELENIUM, ASPIRIN])[0] is None


def test_anomaly_verb_flags_an_unseen_atom_per_row(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "anomaly.csv"
    assert main(["anomaly", SELENIUM, PARACETAMOL, "--model", str(tiny_model), "--out",
                 str(out), "--device", "cpu", "--no-track", "-q"]) == 0
    table = pd.read_csv(out)
    assert table.loc[0, "reason"] == UNSEEN and np.isposinf(table.loc[0, "score"])
    assert pd.isna(table.loc[1, "reason"]) and np.isfinite(table.loc[1, "score"])


def test_encode_verb_writes_no_code_for_an_unseen_atom(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "latents.csv"
    assert main(["encode", SELENIUM, PARACETAMOL, "--model", str(tiny_model), "--out", str(out),
                 "--device", "cpu", "--no-track", "-q"]) == 0
    table = pd.read_csv(out)
    assert table.loc[0, "reason"] == UNSEEN and table.loc[0, ["mu_0", "sigma_0"]].isna().all()
    assert table.loc[1, ["mu_0", "sigma_0"]].notna().all()


def test_decode_refuses_non_finite_rows_and_names_them(model: SelfiesVAE) -> None:
    z = np.zeros((4, model.latent_dim), dtype=np.float32)
    z[1, 0], z[3, 2] = np.nan, -np.inf
    with pytest.raises(ValueError, match=r"non-finite .* rows 1, 3"):
        molvae.decode(model, z)
    with pytest.raises(ValueError, match=r"row 0\b"):
        molvae.decode(model, np.full((1, model.latent_dim), np.inf, dtype=np.float32))
    assert len(molvae.decode(model, z[[0, 2]])) == 2


def test_a_lone_smiles_string_is_one_molecule(model: SelfiesVAE,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``list("CCO")`` would be three one-atom molecules."""
    z = molvae.encode(model, ASPIRIN)
    np.testing.assert_array_equal(z, molvae.encode(model, [ASPIRIN]))
    assert molvae.reconstruct(model, ASPIRIN) == molvae.reconstruct(model, [ASPIRIN])
    assert molvae.elbo(model, "CCO")["smiles"].tolist() == ["CCO"]

    def one_value_per_row(vae: SelfiesVAE, mu: np.ndarray, regress: object,
                          properties: list[str]) -> tuple[dict, list[str]]:
        return {name: np.isfinite(mu).all(axis=1) for name in properties}, properties

    monkeypatch.setattr("molvae.stages.predict.predict_table", one_value_per_row)
    predicted = molvae.predict(model, "CCO", properties="qed")
    assert predicted.to_dict("list") == {"smiles": ["CCO"], "pred_qed": [True]}


def test_decode_verb_calls_an_infinite_latent_infinite(model: SelfiesVAE, tiny_model: Path,
                                                        tmp_path: Path) -> None:
    latents = pd.DataFrame(np.zeros((3, model.latent_dim)),
                           columns=[f"z_{i}" for i in range(model.latent_dim)])
    latents.loc[1, "z_2"], latents.loc[2, "z_0"] = np.inf, np.nan
    latents.to_csv(tmp_path / "z.csv", index=False)
    assert main(["decode", str(tmp_path / "z.csv"), "--model", str(tiny_model), "--out",
                 str(tmp_path / "back.csv"), "--device", "cpu", "--no-track", "-q"]) == 0
    reasons = pd.read_csv(tmp_path / "back.csv")["reason"]
    assert pd.isna(reasons[0])
    assert "infinite" in reasons[1] and "z_2" in reasons[1] and "missing" not in reasons[1]
    assert "missing" in reasons[2] and "z_0" in reasons[2]
