"""The VAE module: shapes, encode/decode contract, seeded sampling, validity, save/load."""

from pathlib import Path

import numpy as np
import pytest
import torch

from molvae import chem
from molvae.data.batching import pad_batch
from molvae.data.tokens import Vocab, smiles_to_selfies
from molvae.devices import choose_device
from molvae.model.loss import active_units, kl_per_dimension, reconstruction_loss
from molvae.model.presets import PRESETS, build_model
from molvae.model.store import load_model, model_from_state, model_state, save_model
from molvae.model.vae import SelfiesVAE
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL


@pytest.fixture(scope="module")
def vocab(prepared_dir: Path) -> Vocab:
    return Vocab.load(prepared_dir / "vocab.json")


def tiny(vocab: Vocab, seed: int = 0, **overrides: object) -> SelfiesVAE:
    torch.manual_seed(seed)
    return build_model(vocab, "tiny", **overrides).eval()


def batch_of(vocab: Vocab, smiles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch([vocab.encode(smiles_to_selfies(s)) for s in smiles], vocab.pad_id)


def test_presets_cover_tiny_to_moses_sized(vocab: Vocab) -> None:
    sizes = {name: sum(p.numel() for p in build_model(vocab, name).parameters())
             for name in PRESETS}
    assert sizes["tiny"] < 10_000 < sizes["small"] < sizes["default"]
    assert build_model(vocab, "default").latent_dim == 128
    assert build_model(vocab, "tiny", latent_dim=5).latent_dim == 5
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_model(vocab, "huge")


def test_encoder_is_sized_apart_from_the_decoder(vocab: Vocab) -> None:
    model = build_model(vocab, "tiny", encoder_hidden_dim=4, encoder_layers=2)
    assert (model.encoder.hidden_size, model.encoder.num_layers) == (4, 2)
    assert (model.decoder.hidden_size, model.decoder.num_layers) == (16, 1)
    tokens, lengths = batch_of(vocab, [ASPIRIN, "CCO"])
    assert model(tokens, lengths).mu.shape == (2, 8)
    default = build_model(vocab, "default")
    assert default.encoder.hidden_size < default.decoder.hidden_size
    # models saved before the encoder had its own sizes (or a fitted prior) still load
    state = model_state(tiny(vocab))
    for key in ("encoder_hidden_dim", "encoder_layers"):
        del state["config"][key]
    for key in ("latent_mean", "latent_scale"):
        del state["state_dict"][key]
    old = model_from_state(state)
    assert old.encoder.hidden_size == 16
    assert torch.equal(old.latent_scale, torch.eye(8))
    del state["state_dict"]["to_mu.bias"]
    with pytest.raises(ValueError, match="to_mu.bias"):
        model_from_state(state)


def test_fitted_prior_samples_where_the_latents_lie(vocab: Vocab, tmp_path: Path) -> None:
    model = tiny(vocab)
    rng = np.random.default_rng(0)
    latents = 3.0 + 0.1 * rng.standard_normal((500, model.latent_dim))
    model.fit_prior(latents)
    fitted = model.prior_samples(2000, "fitted", torch.Generator().manual_seed(0)).numpy()
    standard = model.prior_samples(2000, "standard", torch.Generator().manual_seed(0)).numpy()
    assert np.allclose(fitted.mean(axis=0), 3.0, atol=0.02)
    assert np.allclose(fitted.std(axis=0), 0.1, atol=0.02)
    assert np.allclose(standard.mean(axis=0), 0.0, atol=0.1)
    save_model(model, tmp_path)
    assert torch.equal(load_model(tmp_path, "cpu").latent_mean, model.latent_mean)
    assert len(model.sample(5, seed=0, prior="standard")) == 5
    with pytest.raises(ValueError, match="prior must be one of"):
        model.sample(5, prior="uniform")


def test_mixture_prior_covers_separate_clusters_and_survives_save_and_load(
        vocab: Vocab, tmp_path: Path) -> None:
    model = tiny(vocab)
    rng = np.random.default_rng(0)
    centres = np.array([[-4.0] * 8, [4.0] * 8])
    mu = centres[rng.integers(0, 2, 1000)] + 0.1 * rng.standard_normal((1000, 8))
    model.fit_prior(mu, np.full_like(mu, np.log(0.01)), components=2)
    z = model.prior_samples(4000, generator=torch.Generator().manual_seed(0)).numpy()
    nearest = np.abs(z[:, :1] - centres[:, 0]).min(axis=1)
    assert nearest.max() < 1.0  # one Gaussian would put most samples near 0, between them
    assert 0.4 < (z[:, 0] > 0).mean() < 0.6
    save_model(model, tmp_path, torch.float16)
    loaded = load_model(tmp_path, "cpu")
    assert loaded.mixture_means.shape == (2, 8)
    again = loaded.prior_samples(4000, generator=torch.Generator().manual_seed(0)).numpy()
    assert np.abs(again[:, :1] - centres[:, 0]).min(axis=1).max() < 1.0
    model.fit_prior(mu)  # one component again: the mixture is dropped
    assert len(model.mixture_weights) == 0
    with pytest.raises(ValueError, match="needs at least 2000 molecules"):
        model.fit_prior(mu, components=1000)


def test_posterior_prior_samples_around_the_codes_and_survives_save_and_load(
        vocab: Vocab, tmp_path: Path) -> None:
    model = tiny(vocab)
    rng = np.random.default_rng(0)
    codes = rng.uniform(-5, 5, (50, 8))  # scattered: one Gaussian would fill the gaps
    logvar = np.full_like(codes, np.log(0.01))
    logvar[0] = np.nan  # an unusable row is left out, not sampled
    model.fit_posterior_prior(codes, logvar, size=40, spread=2.0, seed=0)
    assert model.mixture_scales.shape == (40, 8)
    assert torch.allclose(model.mixture_scales, torch.tensor(0.2))
    kept = model.mixture_means.numpy()
    assert not np.isclose(kept, codes[0]).all(axis=1).any()
    z = model.prior_samples(3000, generator=torch.Generator().manual_seed(0)).numpy()
    nearest = np.abs(z[:, None, :] - kept[None]).max(axis=2).min(axis=1)
    assert nearest.max() < 1.5 and np.median(nearest) > 0.2  # around the codes, spread 0.2
    save_model(model, tmp_path, torch.float16)
    loaded = load_model(tmp_path, "cpu")
    assert loaded.mixture_scales.shape == (40, 8)
    again = loaded.prior_samples(3000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(again, torch.as_tensor(z), atol=0.05)  # float16 weights
    with pytest.raises(ValueError, match="spread must be a finite number > 0"):
        model.fit_posterior_prior(codes, logvar, spread=float("nan"))


@pytest.mark.parametrize(("spec", "shape"), [("gaussian", (0, 8, 8)), ("mixture:3", (3, 8, 8)),
                                             ("posteriors:20:2", (20, 8))])
def test_refit_prior_follows_its_spec(vocab: Vocab, spec: str, shape: tuple[int, ...]) -> None:
    model = tiny(vocab)
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((60, 8)), np.full((60, 8), np.log(0.01))
    model.refit_prior(mu, logvar, spec)
    assert tuple(model.mixture_scales.shape) == shape
    if spec.startswith("posteriors"):
        assert torch.allclose(model.mixture_scales, torch.tensor(0.2))  # spread 2 * sigma 0.1


@pytest.mark.parametrize("spec", ["gauss", "mixture", "mixture:0", "posteriors:1.5",
                                  "posteriors:9:-1", "posteriors:9:nan", "gaussian:2"])
def test_a_bad_prior_spec_names_the_forms(vocab: Vocab, spec: str) -> None:
    with pytest.raises(ValueError, match="prior fit must be one of gaussian, mixture:K"):
        tiny(vocab).refit_prior(np.zeros((4, 8)), np.zeros((4, 8)), spec)


def test_forward_shapes_with_and_without_property_head(vocab: Vocab) -> None:
    tokens, lengths = batch_of(vocab, [ASPIRIN, PARACETAMOL, "CCO"])
    out = tiny(vocab)(tokens, lengths)
    assert out.logits.shape == (3, tokens.shape[1] - 1, len(vocab))
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 8)
    assert out.properties is None
    with_head = tiny(vocab, property_names=["qed", "logp"])(tokens, lengths)
    assert with_head.properties.shape == (3, 2)


def test_encoding_ignores_padding(vocab: Vocab) -> None:
    model = tiny(vocab)
    alone, _ = model.encode_tokens(*batch_of(vocab, ["CCO"]))
    padded, _ = model.encode_tokens(*batch_of(vocab, ["CCO", ASPIRIN]))
    torch.testing.assert_close(alone[0], padded[0])


def test_encode_gives_nan_rows_for_unusable_smiles(vocab: Vocab) -> None:
    model = tiny(vocab)
    mu, logvar = model.encode([ASPIRIN, INVALID, PARACETAMOL, ""])
    assert mu.shape == logvar.shape == (4, model.latent_dim) and mu.dtype == np.float32
    assert np.isnan(mu[[1, 3]]).all() and np.isfinite(mu[[0, 2]]).all()
    one_by_one = np.concatenate([model.encode([s])[0] for s in (ASPIRIN, PARACETAMOL)])
    np.testing.assert_allclose(mu[[0, 2]], one_by_one, rtol=1e-5, atol=1e-6)


def test_decoding_stops_each_row_at_eos(vocab: Vocab) -> None:
    model = tiny(vocab)
    ids = model.decode_ids(torch.randn(50, model.latent_dim), greedy=False,
                           generator=torch.Generator().manual_seed(0))
    assert ids.shape[1] <= model.config.max_length + 1
    for row in ids.tolist():
        if vocab.eos_id in row:
            end = row.index(vocab.eos_id)
            assert all(t == vocab.pad_id for t in row[end + 1:])
        assert vocab.bos_id not in row and vocab.unk_id not in row
        assert row[0] != vocab.eos_id


def test_sampling_is_seeded_and_greedy_decoding_deterministic(vocab: Vocab) -> None:
    model = tiny(vocab)
    assert model.sample(40, seed=3) == model.sample(40, seed=3)
    assert model.sample(40, seed=3) != model.sample(40, seed=4)
    z = np.random.default_rng(0).normal(size=(10, model.latent_dim))
    assert model.decode(z) == model.decode(z, batch_size=3)
    assert len(model.sample(7, batch_size=3)) == 7


def test_every_prior_sample_is_a_valid_molecule(vocab: Vocab) -> None:
    samples = tiny(vocab, seed=1).sample(300, temperature=1.5, seed=0)
    assert all(s is not None and chem.to_mol(s) is not None for s in samples)
    assert all(s == chem.canonical_smiles(s) for s in samples)


def test_reconstruct_follows_the_decoder(vocab: Vocab) -> None:
    model = tiny(vocab)
    rebuilt = model.reconstruct([ASPIRIN, INVALID, PARACETAMOL])
    assert rebuilt[1] is None and rebuilt[0] is not None
    assert rebuilt[::2] == model.decode(model.encode([ASPIRIN, PARACETAMOL])[0])
    with pytest.raises(ValueError, match="cannot encode SMILES .*syntax error"):
        model.check_encodable([ASPIRIN, INVALID])


def test_save_load_round_trip_gives_identical_outputs(vocab: Vocab, tmp_path: Path) -> None:
    model = tiny(vocab, property_names=["qed"])
    model.property_mean.fill_(0.6)
    model.property_std.fill_(0.2)
    path = save_model(model, tmp_path / "model")
    loaded = load_model(tmp_path / "model", device="cpu")
    assert loaded.config == model.config and loaded.vocab.tokens == vocab.tokens
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    mu, _ = model.encode([ASPIRIN, PARACETAMOL])
    np.testing.assert_array_equal(mu, loaded.encode([ASPIRIN, PARACETAMOL])[0])
    assert loaded.sample(20, seed=1) == model.sample(20, seed=1)
    np.testing.assert_array_equal(loaded.predict_properties(mu), model.predict_properties(mu))
    assert load_model(path, device="cpu").config == model.config
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_model(tmp_path / "nothing-here")


def test_property_predictions_come_back_in_real_units(vocab: Vocab) -> None:
    model = tiny(vocab, property_names=["mw", "qed"])
    model.property_mean.copy_(torch.tensor([350.0, 0.6]))
    model.property_std.copy_(torch.tensor([50.0, 0.1]))
    z = torch.randn(4, model.latent_dim)
    expected = model.property_head(z) * model.property_std + model.property_mean
    np.testing.assert_allclose(model.predict_properties(z), expected.detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="no property head"):
        tiny(vocab).predict_properties(z)


def test_word_dropout_acts_only_in_training(vocab: Vocab) -> None:
    model = tiny(vocab, word_dropout=0.9)
    tokens, _ = batch_of(vocab, [ASPIRIN])
    z = torch.zeros(1, model.latent_dim)
    plain = model.teacher_forced_logits(z, tokens)
    torch.testing.assert_close(model.teacher_forced_logits(z, tokens), plain)
    model.train()
    assert not torch.allclose(model.teacher_forced_logits(z, tokens), plain)


def test_losses_skip_padding_and_kl_vanishes_at_the_prior(vocab: Vocab) -> None:
    tokens, _ = batch_of(vocab, ["CCO", ASPIRIN])
    logits = torch.randn(2, tokens.shape[1] - 1, len(vocab))
    targets = tokens[:, 1:]
    expected = sum(torch.nn.functional.cross_entropy(logits[i, t], targets[i, t])
                   for i in range(2) for t in range(targets.shape[1])
                   if targets[i, t] != vocab.pad_id) / 2
    torch.testing.assert_close(reconstruction_loss(logits, tokens, vocab.pad_id), expected)
    assert torch.allclose(kl_per_dimension(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(4))
    assert float(kl_per_dimension(torch.ones(3, 4), torch.zeros(3, 4)).sum()) == pytest.approx(2.0)
    varied = np.stack([np.linspace(-1, 1, 10), np.full(10, 0.3), np.linspace(0, 0.01, 10)], 1)
    assert active_units(varied) == 1


def test_choose_device_refuses_missing_hardware() -> None:
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda")
