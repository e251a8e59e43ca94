"""prior: learned:K, a Gaussian mixture trained with the model in its KL term, which the model
then samples from."""

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from molvae.config import ConfigError, from_dict
from molvae.model.loss import kl_divergence
from molvae.model.mixture_prior import MixturePrior
from molvae.model.store import load_model
from molvae.training.checkpoint import load_checkpoint
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model

FAST = {"epochs": 1, "batch_size": 8, "eval_samples": 4, "eval_molecules": 4, "threads": 1,
        "log_model": False, "device": "cpu", "lr_warmup_steps": 2, "max_train": 16,
        "prior": "learned:8"}


def train(data: Path, out: Path, **options: object) -> TrainResult:
    return train_model(from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out),
                                               **options}))


def test_log_prob_is_the_mixtures_density() -> None:
    torch.manual_seed(0)
    prior = MixturePrior(5, 3)
    with torch.no_grad():
        for parameter in prior.parameters():
            parameter.normal_()
    z = torch.randn(7, 3) * 2
    textbook = MixtureSameFamily(Categorical(logits=prior.logits),
                                 Independent(Normal(prior.means, prior.log_scales.exp()), 1))
    torch.testing.assert_close(prior.log_prob(z), textbook.log_prob(z), rtol=1e-5, atol=1e-5)


def test_kl_against_one_standard_component_averages_to_the_closed_form() -> None:
    torch.manual_seed(0)
    prior = MixturePrior(1, 4)  # N(0, I)
    mu, logvar = torch.randn(1, 4).expand(20000, 4), torch.randn(1, 4).expand(20000, 4)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    with torch.no_grad():
        estimate = prior.kl(logvar, z).mean()
    exact = kl_divergence(mu[:1], logvar[:1]).sum()
    assert abs(float(estimate - exact)) < 0.05 * float(exact) + 0.05


def test_the_mixture_starts_about_as_good_a_density_as_one_gaussian() -> None:
    """Components started at single posteriors would be far narrower than the codes' spread
    (a worse density than N(0, I)); the bandwidth widens them to it."""
    torch.manual_seed(0)
    mu, logvar = torch.randn(4000, 8), torch.full((4000, 8), math.log(0.3 ** 2))
    z = mu[64:] + 0.3 * torch.randn_like(mu[64:])  # codes the components were not started at
    prior = MixturePrior(64, 8)
    prior.start_at(mu[:64], logvar[:64])
    gaussian = Independent(Normal(torch.zeros(8), torch.full((8,), (1 + 0.3 ** 2) ** 0.5)), 1)
    with torch.no_grad():
        started, best = -prior.log_prob(z).mean(), -gaussian.log_prob(z).mean()
        prior.log_scales.copy_(0.5 * logvar[:64])  # the single posteriors
        narrow = -prior.log_prob(z).mean()
    assert started < best + 1.0 < narrow


def test_the_mixture_trains_and_becomes_the_models_prior(prepared_dir: Path, tiny_model: Path,
                                                         tmp_path: Path) -> None:
    frozen = train(prepared_dir, tmp_path / "frozen", init_from=str(tiny_model), lr=0.0)
    start = load_checkpoint(tmp_path / "frozen")["prior"]
    assert frozen.progress.step == 2
    # the components start at training molecules' posteriors, not at N(0, I)
    assert start["means"].abs().sum() > 0 and start["log_scales"].abs().sum() > 0
    train(prepared_dir, tmp_path / "m", init_from=str(tiny_model), lr=0.01)
    trained = load_checkpoint(tmp_path / "m")["prior"]
    assert not torch.equal(trained["means"], start["means"])
    model = load_model(tmp_path / "m", device="cpu")
    torch.testing.assert_close(model.mixture_means, trained["means"])
    torch.testing.assert_close(model.mixture_scales, trained["log_scales"].exp())
    torch.testing.assert_close(model.mixture_weights, torch.softmax(trained["logits"], -1))
    assert len(model.sample(4, seed=0)) == 4


def test_a_resumed_run_continues_its_mixture(prepared_dir: Path, tmp_path: Path) -> None:
    whole = train(prepared_dir, tmp_path / "whole", preset="tiny")
    train(prepared_dir, tmp_path / "cut", preset="tiny", max_steps=1)
    resumed = train(prepared_dir, tmp_path / "cut", preset="tiny", resume=True)
    assert resumed.progress.step == whole.progress.step == 2
    for key, value in load_checkpoint(tmp_path / "whole")["prior"].items():
        torch.testing.assert_close(load_checkpoint(tmp_path / "cut")["prior"][key], value)
    with pytest.raises(ConfigError, match=r"changed prior \('learned:8' -> 'gaussian'\)"):
        train(prepared_dir, tmp_path / "cut", preset="tiny", resume=True, epochs=2,
              prior="gaussian")


@pytest.mark.parametrize(("options", "message"), [
    ({"free_bits": 0.5}, "needs free_bits 0"),
    ({"prior": "learned:0"}, "learned:K"),
    ({"prior": "learned:999"}, "needs at least 999 training molecules, got 16"),
])
def test_bad_learned_priors_are_named(prepared_dir: Path, tmp_path: Path, options: dict,
                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train(prepared_dir, tmp_path / "m", preset="tiny", **options)
