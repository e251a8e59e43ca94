"""The decoder-as-policy method on the tiny trained model: it must climb, within the budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import DataStructs

from molvae import chem
from molvae.model.likelihood import sampled_log_likelihood
from molvae.model.store import load_model
from molvae.optim import search as opt
from molvae.optim.breeder import Breeder
from molvae.optim.memory import Memory
from molvae.optim.objective_spec import parse_objective
from molvae.optim.objectives import CallableObjective
from molvae.optim.oracle import Oracle
from molvae.optim.policy import PolicyOptions, PolicySearch
from molvae.optim.tanimoto_gp import TanimotoGP, TanimotoKernel


def policy(tiny_model: Path, oracle: Oracle, **options: object) -> PolicySearch:
    model = load_model(tiny_model, "cpu")
    dim = model.latent_dim
    empty = opt.WarmStart(np.empty((0, dim)), np.empty(0), np.zeros(dim))
    scorer = opt.LatentScorer(model, oracle, "policy")
    return PolicySearch(scorer, empty, batch_size=16, rng=np.random.default_rng(0),
                        options=PolicyOptions(**options))


def test_sampled_log_likelihood_matches_the_sampler(tiny_model: Path) -> None:
    """The likelihood the agent trains is that of the tokens ``decode_ids`` sampled."""
    model = load_model(tiny_model, "cpu")
    z = model.prior_samples(8, generator=torch.Generator().manual_seed(0))
    ids = model.decode_ids(z, greedy=True)
    tokens = torch.cat([torch.full((8, 1), model.vocab.bos_id), ids], dim=1)
    with torch.no_grad():
        log_p = sampled_log_likelihood(model, z, tokens)
    assert torch.isfinite(log_p).all() and (log_p <= 0).all()
    # greedy tokens are each step's most likely: no sequence of that length is likelier
    one = tokens[:1].clone()
    last = int((one[0] != model.vocab.pad_id).sum()) - 1
    one[0, last] = (one[0, last] + 1) % len(model.vocab) or model.vocab.eos_id
    with torch.no_grad():
        assert sampled_log_likelihood(model, z[:1], one) < log_p[0]


def test_policy_climbs_and_respects_the_budget(tiny_model: Path) -> None:
    oracle = Oracle(parse_objective("heavy_atoms"), budget=240)
    search = policy(tiny_model, oracle)
    assert opt.run_search(search, oracle) == "budget"
    assert oracle.calls == 240
    table = oracle.table().sort_values("oracle_call")
    first, last = table["score"].iloc[:48].mean(), table["score"].iloc[-48:].mean()
    assert last > first + 1, f"heavy atoms: first calls {first:.1f}, last calls {last:.1f}"
    assert len(search.memory) <= search.memory.size


def test_with_only_a_model_the_policy_starts_from_molecules_the_model_writes(
        tiny_model: Path) -> None:
    """No data, no start molecule: the memory and the GA's parents are ``init_size`` molecules
    written from the model's fitted prior, scored before the first step."""
    model = load_model(tiny_model, "cpu")
    oracle = Oracle(parse_objective("heavy_atoms"), budget=200)
    problem = opt.Problem(model, oracle.objective, oracle, np.random.default_rng(0), "policy",
                          batch_size=16, init_size=24, radius=0.5, seed=0)
    search = PolicySearch.build(problem, PolicyOptions())
    first = {text: record for text, record in oracle.records.items()
             if record["method"] == "policy/init"}
    assert 12 <= len(first) <= 24 and oracle.calls == len(first)  # repeats cost nothing
    solutions = {text for text, record in first.items() if oracle.is_solution(record)}
    assert len(solutions) >= 6 and set(search.breeder.scores) == solutions
    assert set(search.memory.entries) == solutions


def test_memory_keeps_the_best_distinct_molecules() -> None:
    memory = Memory(size=2)
    z, tokens = torch.zeros(4, 3), [torch.tensor([1, 5, 2])] * 4
    memory.add(["CC", "CCC", "CC", None], np.array([0.5, 0.9, 0.7, 1.0]), z[:4], tokens)
    memory.add(["CCO"], np.array([np.nan]), z[:1], tokens[:1])
    memory.add(["CCN"], np.array([0.6]), z[:1], tokens[:1])
    assert {k: v[0] for k, v in memory.entries.items()} == {"CCC": 0.9, "CCN": 0.6}
    scores, picked_z, picked_tokens = memory.sample(5, np.random.default_rng(0))
    assert sorted(scores) == [0.6, 0.9] and picked_z.shape == (2, 3)
    assert [row.tolist() for row in picked_tokens] == [[1, 5, 2]] * 2


def test_bred_molecules_are_new_and_learnt_with_their_own_tokens(tiny_model: Path) -> None:
    """GA offspring are scored once each, and those the model can write enter the memory with
    token rows that spell the same molecule and z = their encoding."""
    oracle = Oracle(parse_objective("heavy_atoms"), budget=1000)
    search = policy(tiny_model, oracle, crossover=0.5, replay=0, bandit=False)
    parents = ["CCOc1ccccc1", "CC(=O)Nc1ccc(O)cc1", "c1ccc2[nH]ccc2c1", "CCN(CC)CCO"]
    search.remember(parents, np.array([1.0, 2.0, 3.0, 4.0]), search.prior.encode(parents)[0])
    search.step()
    bred = [text for text, record in oracle.records.items()
            if record["method"] == "policy/crossover"]
    assert 0 < len(bred) <= 8 and oracle.calls <= 16 and not set(bred) & set(parents)
    learnt = [text for text in bred if text in search.memory.entries]
    assert learnt, "no offspring the tiny model can write"
    vocab = search.prior.vocab
    for text in learnt:
        _, z, row = search.memory.entries[text]
        assert vocab.to_smiles(row[1:].tolist()) == text
        assert torch.allclose(z, torch.as_tensor(search.prior.encode([text])[0][0]))
    assert set(bred) <= set(search.breeder.scores)  # every scored child may parent the next


def test_screened_offspring_are_the_children_predicted_best(tiny_model: Path) -> None:
    """With ``screen``, the GA breeds more children than it scores and scores those whose
    nearest scored molecules score best."""
    oracle = Oracle(parse_objective("similarity:CC(=O)Nc1ccc(O)cc1"), budget=1000)
    search = policy(tiny_model, oracle, crossover=0.5, replay=0, screen=4)
    parents = ["CCOc1ccccc1", "CC(=O)Nc1ccccc1", "c1ccc2[nH]ccc2c1", "CCN(CC)CCO", "Oc1ccccc1",
               "CC(=O)NC1CCCCC1"]
    scores = np.array([oracle.objective.score(text, {}) for text in parents])
    search.remember(parents, scores, search.prior.encode(parents)[0])
    predict = search.breeder.surrogate.predict
    children = search.breeder.children(16, oracle.records)
    picked = [children[i] for i in search.breeder.screened(children, 4)]
    assert len(picked) == 4
    passed_over = [text for text in children if text not in picked]
    assert passed_over and predict(picked).min() >= predict(passed_over).max()


@pytest.mark.parametrize("key, value", [("policy_top_fraction", 0.0), ("policy_crossover", 1.0),
                                        ("policy_population", 0), ("policy_screen", 0),
                                        ("policy_replay", -1), ("policy_sigma", 0),
                                        ("policy_mutation", 1.5)])
def test_bad_policy_options_name_the_key(tiny_model: Path, key: str, value: float) -> None:
    from molvae.config import ConfigError, from_dict
    from molvae.stages.optimize import OptimizeConfig

    with pytest.raises(ConfigError, match=key):
        from_dict(OptimizeConfig, {"model": str(tiny_model), "method": "policy", key: value})


def test_the_tanimoto_gp_ranks_unscored_molecules_by_their_similarity_to_good_ones() -> None:
    """Scored: similarity to paracetamol. Unscored analogues of paracetamol rank above unscored
    molecules unlike it, and the kernel is exact Tanimoto."""
    target = "CC(=O)Nc1ccc(O)cc1"
    scored = ["CC(=O)Nc1ccccc1", "CC(=O)Nc1ccc(C)cc1", "Oc1ccccc1", "c1ccc2[nH]ccc2c1",
              "CCN(CC)CCO", "CCCCCCCC", "C1CCCCC1", "CC(=O)NC1CCCCC1", "Nc1ccc(O)cc1"]
    gp = TanimotoGP()
    gp.add([*scored, "not a molecule"], np.array([chem.similarity(s, target) for s in scored]
                                                 + [1.0]))
    assert len(gp) == len(scored)
    analogues, unlike = ["CC(=O)Nc1ccc(OC)cc1", "CCC(=O)Nc1ccc(O)cc1"], ["CCCCCCO", "C1CCNCC1"]
    predicted = gp.predict([*analogues, *unlike, "C1CC"], kappa=0.0)
    assert np.isnan(predicted[-1]) and predicted[:2].min() > predicted[2:4].max()
    bits = gp._matrix([gp._featurized(s) for s in ("CCO", "CCN")])
    a, b = (chem.morgan_fingerprint(chem.to_mol(s), 2, 2048) for s in ("CCO", "CCN"))
    assert np.isclose(TanimotoKernel()(bits)[0, 1], DataStructs.TanimotoSimilarity(a, b))


def test_scoring_what_the_gp_predicted_learns_the_same_as_scoring_unseen_molecules() -> None:
    """The features kept from the last prediction are the molecules' own: a GP that rated the
    children before they were scored predicts exactly as one that never saw them."""
    first = ["CC(=O)Nc1ccccc1", "Oc1ccccc1", "CCN(CC)CCO", "C1CCCCC1"]
    children = ["CC(=O)Nc1ccc(OC)cc1", "CCCCCCO", "C1CC", "Nc1ccc(O)cc1"]
    scores = np.array([0.9, 0.2, 0.5, 0.7])
    rated, fresh = TanimotoGP(descriptors=True), TanimotoGP(descriptors=True)
    for gp in (rated, fresh):
        gp.add(first, np.array([0.8, 0.3, 0.1, 0.2]))
    rated.predict(children)
    fresh.predict(["CCO"])  # the same fits, on other molecules
    for gp in (rated, fresh):
        gp.add(children, scores)
    assert len(rated) == len(fresh) == 7
    queries = ["CC(=O)Nc1ccc(O)cc1", "CCCCO"]
    assert np.array_equal(rated.predict(queries), fresh.predict(queries))


def test_the_descriptor_kernel_learns_a_property_the_bits_miss(molecules_csv: Path) -> None:
    """Scored: TPSA, a sum over polar atoms that Morgan bits do not count. With the
    descriptor kernel the held-out ranking follows TPSA far better than with bits alone."""
    from scipy.stats import spearmanr

    smiles = pd.read_csv(molecules_csv)["smiles"].tolist()
    tpsa = np.array([chem.properties(chem.to_mol(s), ["tpsa"])["tpsa"] for s in smiles])
    rho = {}
    for descriptors in (False, True):
        gp = TanimotoGP(descriptors=descriptors)
        gp.add(smiles[:70], tpsa[:70])
        rho[descriptors] = spearmanr(gp.predict(smiles[70:], kappa=0.0), tpsa[70:]).correlation
    assert rho[True] > 0.9 and rho[True] > rho[False] + 0.2, rho


def test_the_bandit_shares_each_batch_among_the_agent_crossover_and_mutation(
        tiny_model: Path) -> None:
    """With ``bandit``, each step scores at most a batch, every operator reaches the oracle
    (recorded as its source), each is credited with what it proposed, and the budget holds."""
    oracle = Oracle(parse_objective("heavy_atoms"), budget=112)
    search = policy(tiny_model, oracle, bandit=True)
    search.first_design(32)
    before = oracle.calls
    search.step()
    assert 0 < oracle.calls - before <= 16
    assert search.bandit is not None and sum(search.bandit.trials.values()) == \
        oracle.calls - before
    assert opt.run_search(search, oracle) == "budget" and oracle.calls == 112
    assert {"policy", "policy/crossover", "policy/mutation"} <= set(oracle.table()["method"])


def test_without_a_signal_the_agent_writes_from_the_prior_and_stays_the_prior(
        tiny_model: Path) -> None:
    """Until some molecule scores better than another (a needle such as a substructure nothing
    has), there is no best to vary or to learn toward: the agent's weights stay the
    pretrained ones, and its writes are not drawn near remembered molecules."""
    oracle = Oracle(CallableObjective(lambda smiles: 0.0, "flat"), budget=96)
    search = policy(tiny_model, oracle)
    search.first_design(32)
    assert opt.run_search(search, oracle) == "budget"
    for agent, prior in zip(search.agent.parameters(), search.prior.parameters(), strict=True):
        assert torch.equal(agent, prior)
    drawn: list[int] = []
    search.memory.sample = lambda n, *args, **kwargs: drawn.append(n)  # type: ignore[method-assign]
    search._latents(16)
    assert drawn == []


def test_no_call_is_spent_on_a_molecule_above_the_size_bound() -> None:
    """Crossover can grow molecules without bound: the screen gives a place above
    ``max_heavy_atoms`` to the next candidate, and leaves the others where they were."""
    chain = ["C" * size for size in (30, 4, 12, 6, 40)]
    breeder = Breeder(10, 0.1, screen=3, surrogate="gp", seed=0, max_heavy_atoms=12)
    breeder.add(["C" * 10, "C" * 3, "CCO"], np.array([1.0, 0.1, 0.0]))
    unbounded = Breeder(10, 0.1, screen=3, surrogate="gp", seed=0)
    unbounded.add(["C" * 10, "C" * 3, "CCO"], np.array([1.0, 0.1, 0.0]))
    ranked = unbounded.screened(chain, 4)  # ranked by the surrogate: 5 > 4
    assert [chain[i] for i in breeder.screened(chain, 2)] == \
        [chain[i] for i in ranked if len(chain[i]) <= 12][:2]
    assert all(len(chain[i]) <= 12 for i in breeder.screened(chain, 5))
    assert breeder.screened(chain[1:4], 3) == [0, 1, 2]  # no screen below n: all fit


def test_scores_of_molecules_the_model_cannot_write_leave_nothing_to_write_near(
        tiny_model: Path) -> None:
    """Remembered scores widen the range even when the vocabulary cannot write the molecules:
    with a signal and an empty memory, the agent's writes come from the prior."""
    oracle = Oracle(parse_objective("heavy_atoms"), budget=16)
    search = policy(tiny_model, oracle)
    search.remember(["[Xe]", "[Xe][Xe]"], np.array([1.0, 2.0]), np.zeros((2, search.dim)))
    assert len(search.memory) == 0 and search._latents(4).shape == (4, search.dim)
