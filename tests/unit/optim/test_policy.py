"""The decoder fine-tuned as a policy: it climbs, stays within budget, leaves the prior alone."""

from pathlib import Path

import numpy as np
import torch

from molvae.model.store import load_model
from molvae.optim.objectives import parse_objective
from molvae.optim.oracle import Oracle
from molvae.optim.policy import DecoderPolicy, sequence_log_likelihood
from molvae.optim.search import Evaluator, WarmStart, run_search


def test_policy_climbs_within_budget_and_keeps_the_prior(tiny_model: Path) -> None:
    model = load_model(tiny_model, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    oracle = Oracle(parse_objective("heavy_atoms_range:10:14:2"), budget=400)
    dim = model.latent_dim
    warm = WarmStart(np.empty((0, dim)), np.empty(0), np.zeros(dim))
    policy = DecoderPolicy(Evaluator(model, oracle, "policy"), warm, batch_size=32,
                           rng=np.random.default_rng(0), model=model, sigma=60.0, lr=3e-3,
                           replay=8, seed=0)
    assert run_search(policy, oracle, patience=20) == "budget"
    assert oracle.calls == 400
    scores = [r["score"] for r in sorted(oracle.records.values(),
                                         key=lambda r: r["oracle_call"])]
    assert np.nanmean(scores[-100:]) > np.nanmean(scores[:100]) + 0.1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert len(policy.memory) > 0 and policy.memory[0].score > 0


def test_sequence_log_likelihood_matches_the_decoder_steps(tiny_model: Path) -> None:
    model = load_model(tiny_model, "cpu")
    z = model.prior_samples(4, generator=torch.Generator().manual_seed(0))
    ids = model.decode_ids(z)  # greedy: each chosen token is the most likely one
    log_likelihood = sequence_log_likelihood(model, z, ids)
    assert log_likelihood.shape == (4,) and bool((log_likelihood <= 0).all())
    shuffled = sequence_log_likelihood(model, z[[1, 0, 3, 2]], ids)
    assert not torch.allclose(shuffled, log_likelihood)  # z conditions the likelihood
