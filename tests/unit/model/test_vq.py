"""The VQ-VAE variant: quantizer, code prior, the model's API, saving, and the Gaussian model
left as it was."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.model.code_prior import CodePrior
from molvae.model.presets import build_model
from molvae.model.quantizer import VectorQuantizer, codebook_usage
from molvae.model.store import load_model, model_from_state, model_state, save_model
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import VQVAE, require_gaussian
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

SMILES = [ASPIRIN, PARACETAMOL, "CCO", "c1ccccc1", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]


@pytest.fixture
def vocab() -> Vocab:
    return Vocab.build([smiles_to_selfies(s) for s in SMILES])


def vq(vocab: Vocab, codes: int = 4, size: int = 16) -> VQVAE:
    torch.manual_seed(0)
    model = build_model(vocab, "tiny", latent="vq", codes=codes, codebook_size=size,
                        code_prior_dim=8)
    assert isinstance(model, VQVAE)
    return model.eval()


def test_quantizer_snaps_to_the_nearest_code_and_passes_gradients_straight_through() -> None:
    quantizer = VectorQuantizer(3, 2).eval()
    quantizer.codebook.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]]))
    z_e = torch.tensor([[[0.9, 0.1], [0.1, 4.0]]], requires_grad=True)
    q, codes, commitment = quantizer(z_e)
    assert codes.tolist() == [[1, 2]]
    assert torch.equal(q.detach(), torch.tensor([[[1.0, 0.0], [0.0, 5.0]]]))
    assert commitment.item() == pytest.approx(0.01 + 0.01 + 0.01 + 1.0)
    (q * torch.tensor([2.0, 3.0])).sum().backward()
    assert torch.equal(z_e.grad, torch.tensor([[[2.0, 3.0], [2.0, 3.0]]]))


def test_the_codebook_follows_its_vectors_and_dead_codes_restart() -> None:
    torch.manual_seed(0)
    quantizer = VectorQuantizer(4, 2).train()
    cluster = torch.tensor([3.0, -3.0]) + 0.01 * torch.randn(64, 1, 2)
    quantizer(cluster)  # initialized on the batch: every code lies in the cluster
    far = torch.tensor([[100.0, 100.0]])
    quantizer.codebook[0] = far  # a code nothing is near
    quantizer.ema_sum[0], quantizer.ema_count[0] = far[0] * 0.5, 0.5
    _, codes, _ = quantizer(cluster)
    assert 0 not in codes.unique().tolist()
    assert int(quantizer.restarts) >= 1  # the unused code moved onto a batch vector
    assert (quantizer.codebook - torch.tensor([3.0, -3.0])).abs().max() < 0.1
    quantizer.eval()
    before = quantizer.codebook.clone()
    quantizer(cluster + 1.0)
    assert torch.equal(quantizer.codebook, before)  # eval mode never moves it


def test_codebook_usage_counts_perplexity_and_dead_codes() -> None:
    usage = codebook_usage(np.array([[0, 1], [2, 3], [-1, -1]]), 8)
    assert usage["codebook_perplexity"] == pytest.approx(4.0)
    assert usage["codes_used"] == 4 and usage["dead_codes"] == 4


def test_code_prior_scores_and_samples_code_sequences() -> None:
    torch.manual_seed(0)
    prior = CodePrior(16, 4, 8).eval()
    codes = torch.randint(16, (5, 4))
    nll = prior.nll(codes)
    assert nll.shape == (5,) and bool((nll > 0).all())
    a = prior.sample(6, torch.Generator().manual_seed(1))
    b = prior.sample(6, torch.Generator().manual_seed(1))
    assert a.shape == (6, 4) and torch.equal(a, b) and int(a.max()) < 16


def test_vq_model_encodes_to_codes_and_decodes_them(vocab: Vocab) -> None:
    model = vq(vocab)
    assert model.bits_per_molecule == 4 * math.log2(16)
    assert not hasattr(model, "to_logvar")
    codes = model.encode_codes([ASPIRIN, INVALID, "CCO"])
    assert codes.shape == (3, 4) and (codes[1] == -1).all() and (codes[[0, 2]] >= 0).all()
    z, logvar = model.encode([ASPIRIN, "CCO"])
    assert np.isneginf(logvar).all()  # a code is a point
    assert np.array_equal(model.codes_of(z), codes[[0, 2]])
    assert model.decode_codes(codes[[0, 2]]) == model.decode(z) == \
        [s for s in model.reconstruct([ASPIRIN, INVALID, "CCO"]) if s is not None]
    nudged = z + 1e-4  # any vector decodes as its nearest codes
    assert model.decode(nudged) == model.decode(z)
    with pytest.raises(ValueError, match="codes must lie in 0..15"):
        model.decode_codes(np.array([[0, 1, 2, 16]]))
    with pytest.raises(ValueError, match=r"shape \[N, 4\]"):
        model.decode_codes(np.array([[0, 1]]))


def test_vq_model_samples_only_from_a_trained_code_prior(vocab: Vocab) -> None:
    model = vq(vocab)
    with pytest.raises(ValueError, match="code prior is not trained"):
        model.sample(3, seed=0)
    uniform = model.sample(4, seed=0, prior="standard")
    assert len(uniform) == 4 and uniform == model.sample(4, seed=0, prior="standard")
    model.code_prior_trained.fill_(True)
    assert model.sample(5, seed=1) == model.sample(5, seed=1)


def test_vq_forward_gives_a_commitment_and_no_kl(vocab: Vocab) -> None:
    from molvae.data.batching import Batch, pad_batch
    from molvae.model.loss import vae_loss

    model = vq(vocab).train()
    tokens, lengths = pad_batch([vocab.encode(smiles_to_selfies(s)) for s in SMILES[:3]],
                                vocab.pad_id)
    out = model(tokens, lengths)
    assert out.commitment is not None and out.z.shape == (3, model.latent_dim)
    terms = vae_loss(out, Batch(tokens, lengths), vocab.pad_id, beta=1.0, free_bits=0.0,
                     property_weight=1.0, commitment=0.5)
    assert set(terms) == {"recon", "commitment", "loss"}
    assert terms["loss"].item() == pytest.approx(terms["recon"].item()
                                                 + 0.5 * terms["commitment"].item())
    terms["loss"].backward()
    assert model.to_mu.weight.grad is not None and model.to_mu.weight.grad.abs().sum() > 0


def test_vq_model_survives_save_and_load(vocab: Vocab, tmp_path: Path) -> None:
    model = vq(vocab)
    model.code_prior_trained.fill_(True)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path, "cpu")
    assert isinstance(loaded, VQVAE) and loaded.config.latent == "vq"
    assert loaded.sample(4, seed=2) == model.sample(4, seed=2)
    assert np.array_equal(loaded.encode_codes(SMILES), model.encode_codes(SMILES))


def test_models_saved_before_vq_load_as_gaussian(vocab: Vocab) -> None:
    torch.manual_seed(0)
    state = model_state(build_model(vocab, "tiny"))
    for key in ("latent", "codes", "codebook_size", "code_prior_dim"):
        del state["config"][key]
    model = model_from_state(state)
    assert type(model) is SelfiesVAE and model.config.latent == "gaussian"


def test_vq_refuses_what_needs_a_continuous_latent_space(vocab: Vocab) -> None:
    from molvae.model.analogs import generate_analogs
    from molvae.model.ops import interpolate

    model = vq(vocab)
    with pytest.raises(ValueError, match="interpolation needs a continuous latent space: "
                                         "this is a VQ model"):
        interpolate(model, ASPIRIN, "CCO")
    with pytest.raises(ValueError, match="analog generation needs a continuous"):
        generate_analogs(model, [ASPIRIN], 2)
    require_gaussian(build_model(vocab, "tiny"), "anything")  # a Gaussian model passes
    with pytest.raises(ValueError, match="codes >= 1 dividing latent_dim"):
        build_model(vocab, "tiny", latent="vq", codes=3, codebook_size=16, code_prior_dim=8)
    with pytest.raises(ValueError, match="latent must be one of gaussian, vq"):
        build_model(vocab, "tiny", latent="discrete")


def test_the_shipped_gaussian_model_samples_what_it_did_when_shipped() -> None:
    """Same seed, same molecules: the first of ``molvae sample --model moses -n 200 --seed 0``,
    recorded when the model was shipped (the Gaussian path must not move under the VQ variant
    or anything else; a new shipped model records its own)."""
    from molvae.api import load

    model = load("moses", "cpu")
    assert type(model) is SelfiesVAE
    assert model.sample(200, seed=0)[:3] == [
        "CC1=CC(OCCNC(=O)c2ccco2)=CC2=C(F)C=C(C)NC2=N1", "O=C(Cn1nnnc1COC1CNCCN1)c1ccccc1",
        "C=C1N=C(N)N=C(C)OC=CC=C1CNC(=O)c1cc(C(C)=O)n[nH]1"]
