"""A VQ model through the real CLI: train, sample, encode (codes and bits), decode the codes,
anomaly (the codes' NLL plus the decoder's), and clear refusals where codes do not fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molvae.cli import main
from molvae.model.store import load_model
from molvae.model.vq import VQVAE
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

QUIET = ["--no-track", "-q", "--device", "cpu"]


def test_train_help_explains_the_vq_latent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--latent LATENT", "short sequence of --codes codes", "--codebook-size",
                   "code prior", "optimize, interpolate, analogs and regress need a Gaussian"):
        assert phrase in text
    for verb in ("optimize", "interpolate", "analogs", "regress", "predict"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert "Gaussian models only" in " ".join(capsys.readouterr().out.split()), verb


def test_train_vq_from_the_cli_then_sample(prepared_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vq"
    assert main(["train", "--data", str(prepared_dir), "--out", str(out), "--preset", "tiny",
                 "--latent", "vq", "--codes", "2", "--codebook-size", "8", "--epochs", "1",
                 "--batch-size", "16", "--code-prior-epochs", "1", "--code-prior-dim", "8",
                 "--eval-samples", "4",
                 "--eval-molecules", "4", "--no-log-model", "--allow-degenerate",
                 *QUIET]) == 0
    assert "code prior 1 epochs" in capsys.readouterr().out
    model = load_model(out, "cpu")
    assert isinstance(model, VQVAE) and model.config.codes == 2
    samples = tmp_path / "samples.csv"
    assert main(["sample", "--model", str(out), "-n", "6", "--out", str(samples), *QUIET]) == 0
    assert len(pd.read_csv(samples)) == 6


def test_encode_writes_codes_and_decode_reads_them_back(tiny_vq_model: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    latents, inputs = tmp_path / "codes.csv", tmp_path / "in.csv"
    pd.DataFrame({"smiles": [ASPIRIN, PARACETAMOL, INVALID]}).to_csv(inputs, index=False)
    assert main(["encode", str(inputs), "--model", str(tiny_vq_model), "--out", str(latents),
                 *QUIET]) == 0
    assert "codes of 16 bits per molecule" in capsys.readouterr().out  # 4 x log2(16)
    table = pd.read_csv(latents)
    codes = [f"code_{i}" for i in range(4)]
    assert {"code_nll", *codes} <= set(table.columns)
    assert not {"kl", "mu_0", "sigma_0"} & set(table.columns)
    assert table[codes].iloc[2].isna().all() and table[codes].iloc[:2].notna().all().all()
    np.testing.assert_allclose(table["neg_elbo"][:2], (table["nll"] + table["code_nll"])[:2])
    decoded = tmp_path / "decoded.csv"
    assert main(["decode", str(latents), "--model", str(tiny_vq_model), "--out", str(decoded),
                 *QUIET]) == 0
    out = pd.read_csv(decoded)
    model = load_model(tiny_vq_model, "cpu")
    assert out["smiles"].tolist()[:2] == model.reconstruct([ASPIRIN, PARACETAMOL])
    assert "not a code" in out["reason"][2]
    assert "code_0" not in out.columns and "code_nll" not in out.columns


def test_anomaly_scores_codes_and_tokens(tiny_vq_model: Path, prepared_dir: Path,
                                         tmp_path: Path) -> None:
    out = tmp_path / "anomaly.csv"
    assert main(["anomaly", ASPIRIN, "CCO", "[Na+].[Cl-]", "--model", str(tiny_vq_model),
                 "--score", "neg_elbo", "--reference", str(prepared_dir), "--out", str(out),
                 *QUIET]) == 0
    table = pd.read_csv(out)
    np.testing.assert_allclose(table["score"][:2], (table["nll"] + table["code_nll"])[:2])
    assert (table["code_nll"][:2] > 0).all() and np.isinf(table["score"][2])
    assert table["percentile"][2] == 100


@pytest.mark.parametrize("verb", [
    ["optimize", "--objective", "qed", "--budget", "4", "--out", "OUT"],
    ["interpolate", "CCO", "CCCO", "--out", "OUT"],
    ["analogs", "CCO", "--out", "OUT"],
    ["regress", "--data", "DATA", "--out", "OUT"],
    ["predict", "CCO", "--out", "OUT/p.csv"],
])
def test_verbs_needing_a_continuous_latent_space_refuse_a_vq_model(
        verb: list[str], tiny_vq_model: Path, prepared_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(prepared_dir) if a == "DATA" else a.replace("OUT", str(tmp_path / "o"))
            for a in verb]
    assert main([*args, "--model", str(tiny_vq_model), *QUIET]) == 2
    error = capsys.readouterr().err
    assert "needs a continuous latent space: this is a VQ model" in error
    assert "molvae train without --latent vq" in error
