"""Molecule-level operations: per-molecule ELBO terms and the interpolation paths."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from molvae.data.batching import pad_batch
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.model.loss import kl_per_dimension, reconstruction_loss
from molvae.model.ops import elbo_terms, interpolate, interpolation_path, slerp
from molvae.model.presets import build_model
from molvae.model.vae import SelfiesVAE
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL


@pytest.fixture(scope="module")
def model(prepared_dir: Path) -> SelfiesVAE:
    torch.manual_seed(0)
    return build_model(Vocab.load(prepared_dir / "vocab.json"), "tiny").eval()


def test_elbo_terms_are_the_training_loss_per_molecule(model: SelfiesVAE) -> None:
    smiles = [ASPIRIN, PARACETAMOL, "CCO"]
    terms = elbo_terms(model, smiles, batch_size=2)
    tokens, lengths = pad_batch([model.vocab.encode(smiles_to_selfies(s)) for s in smiles],
                                model.vocab.pad_id)
    with torch.no_grad():
        mu, logvar = model.encode_tokens(tokens, lengths)
        recon = reconstruction_loss(model.teacher_forced_logits(mu, tokens), tokens,
                                    model.vocab.pad_id)
        kl = kl_per_dimension(mu, logvar).sum()
    assert terms.nll.mean() == pytest.approx(float(recon), rel=1e-5)
    assert terms.kl.mean() == pytest.approx(float(kl), rel=1e-5)
    np.testing.assert_allclose(terms.mu, mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(terms.mu, model.encode(smiles)[0], rtol=1e-5, atol=1e-6)
    assert terms.n_tokens.tolist() == (lengths - 1).tolist()
    np.testing.assert_allclose(terms.neg_elbo, terms.nll + terms.kl)
    assert (terms.nll > 0).all() and (terms.kl >= 0).all()


def test_unusable_rows_stay_with_nan_and_a_reason(model: SelfiesVAE) -> None:
    table = elbo_terms(model, [INVALID, "", None, "C[Si](C)(C)C", ASPIRIN]).table()
    assert len(table) == 5
    assert table.loc[:2, "neg_elbo"].isna().all() and table.loc[:2, "mu_0"].isna().all()
    assert "syntax" in table.loc[0, "reason"] and table.loc[1, "reason"] == table.loc[2, "reason"]
    # [Si] is outside the vocabulary: the model cannot write it (p = 0), so no posterior
    assert table.loc[3, "reason"] == "tokens the model never saw: [Si]"
    assert np.isposinf(table.loc[3, ["nll", "neg_elbo", "nll_per_token"]].to_numpy(float)).all()
    assert table.loc[3, ["mu_0", "kl"]].isna().all()
    assert pd.isna(table.loc[4, "reason"]) and np.isfinite(table.loc[4, "neg_elbo"])
    assert table.loc[3, "unknown_tokens"] >= 1 and table.loc[4, "unknown_tokens"] == 0
    assert (table.loc[4, [f"sigma_{i}" for i in range(model.latent_dim)]] > 0).all()


def test_slerp_keeps_the_radius_and_falls_back_to_a_line() -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    path = slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[-1], b, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0)
    np.testing.assert_allclose(path[2], [2 ** -0.5, 2 ** -0.5])
    np.testing.assert_allclose(slerp(a, 2 * a, np.array([0.5]))[0], [1.5, 0.0])


def test_interpolation_paths_share_their_ends(model: SelfiesVAE) -> None:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 3.0, 0.0])
    line = interpolation_path(a, b, 3, "linear")
    np.testing.assert_allclose(line[1], [0.5, 1.5, 0.0])
    arc = interpolation_path(a, b, 3, "spherical", center=np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(arc[[0, -1]], np.stack([a, b]), atol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        interpolation_path(a, b, 3, "cubic")
    table = interpolate(model, ASPIRIN, PARACETAMOL, steps=4, method="spherical")
    assert table["step"].tolist() == [0, 1, 2, 3]
    ends = model.decode(model.encode([ASPIRIN, PARACETAMOL])[0])
    assert table["smiles"].iloc[[0, -1]].tolist() == ends
    with pytest.raises(ValueError, match="cannot encode"):
        interpolate(model, INVALID, ASPIRIN)
