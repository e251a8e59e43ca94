"""benchmarks/prior_size.py: the posterior prior holds the codes of the molecules it names."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.cpu_recipe import posterior_codes
from benchmarks.prior_size import prior_codes
from molvae.model.store import load_model


def test_a_prior_of_n_training_molecules_holds_their_posteriors(
        tiny_model: Path, prepared_dir: Path) -> None:
    model = load_model(tiny_model, "cpu")
    with torch.no_grad():
        mu, logvar = prior_codes(model, prepared_dir, "train:5", seed=0)
        val_mu, _ = prior_codes(model, prepared_dir, "val", seed=0)
        train = pd.read_parquet(prepared_dir / "train.parquet", columns=["selfies"])
        picked = train["selfies"].sample(5, random_state=0).tolist()
        expected, _ = posterior_codes(model, picked)
    assert mu.shape == logvar.shape == (5, model.latent_dim)
    assert torch.allclose(mu, expected)
    assert len(val_mu) == len(pd.read_parquet(prepared_dir / "val.parquet"))
    model.fit_posterior_prior(mu.numpy(), logvar.numpy(), size=len(mu))
    assert torch.allclose(model.mixture_means.sort(0).values, mu.sort(0).values)


@pytest.mark.parametrize("spec", ["test", "train:", "train:0", "train:x"])
def test_a_prior_spec_it_does_not_know_names_the_forms(
        tiny_model: Path, prepared_dir: Path, spec: str) -> None:
    with pytest.raises(SystemExit, match="'val' or 'train:N'"):
        prior_codes(load_model(tiny_model, "cpu"), prepared_dir, spec, seed=0)
