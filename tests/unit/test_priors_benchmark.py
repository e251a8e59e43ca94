"""benchmarks/priors.py: the posterior prior holds the codes of the molecules it names, and
the flow prior draws codes where they lie."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmarks.cpu_recipe import posterior_codes
from benchmarks.priors import flow_samples, main, prior_codes, prior_samples
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


def test_the_flow_prior_draws_codes_where_the_molecules_lie(
        tiny_model: Path, prepared_dir: Path) -> None:
    model = load_model(tiny_model, "cpu")
    with torch.no_grad():
        mu, logvar = prior_codes(model, prepared_dir, "flow:40", seed=0)
    z = flow_samples(mu, logvar, 500, temperature=1.0, seed=0)
    assert z.shape == (500, model.latent_dim) and torch.isfinite(z).all()
    # fitted to the codes: centred on them, far nearer than N(0, I) draws would be
    assert (z.mean(0) - mu.mean(0)).abs().max() < 0.5 * mu.std(0).max() + 0.5
    colder = flow_samples(mu, logvar, 500, temperature=0.5, seed=0)
    assert colder.std(0).sum() < z.std(0).sum()
    smiles, molecules = prior_samples(model, prepared_dir, "flow:40:0.8", 8, seed=0)
    assert molecules == 40 and len(smiles) == 8


def test_own_samples_the_prior_the_model_was_saved_with(tiny_model: Path,
                                                         prepared_dir: Path) -> None:
    model = load_model(tiny_model, "cpu")
    smiles, components = prior_samples(model, prepared_dir, "own", 8, seed=0)
    assert smiles == load_model(tiny_model, "cpu").sample(8, seed=0)
    assert components == len(model.mixture_weights)


@pytest.mark.parametrize("spec", ["test", "train:", "train:0", "train:x", "flow", "flow:5:0",
                                  "val:3", "own:2"])
def test_a_prior_spec_it_does_not_know_names_the_forms(
        tiny_model: Path, prepared_dir: Path, spec: str) -> None:
    with pytest.raises(SystemExit, match="'val', 'train:N' or 'flow:N\\[:T\\]'"):
        prior_codes(load_model(tiny_model, "cpu"), prepared_dir, spec, seed=0)


def test_a_runs_checkpoint_is_scored_like_a_model_folder(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", str(tiny_model / "checkpoint.pt"), "--data", str(prepared_dir),
          "--priors", "train:5", "--samples", "8", "--out", str(tmp_path)])
    assert "train:5" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "train-5" / "samples.csv")) == 8
