"""The optimizers on a transparent toy decoder, and the stage on a tiny trained model.

The toy decoder makes each latent coordinate pick a fragment of a chain, larger fragments for
larger values (0 to 10 heavy atoms), so "heavy atoms" rises step by step with z and an
optimizer that works must climb it. The tiny trained model then checks the stage end to end
(budget, outputs, constraints).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molvae import chem
from molvae.config import ConfigError, from_dict
from molvae.optim import search as opt
from molvae.optim.auc import auc_every_call
from molvae.optim.bo import BOOptions, TrustRegionBO
from molvae.optim.cmaes import CmaEs, CmaEsOptions
from molvae.optim.gradient import GradientAscent, GradientOptions
from molvae.optim.objective_spec import parse_objective
from molvae.optim.oracle import Oracle
from molvae.optim.random_search import RandomSearch

FRAGMENTS = ("", "C", "CO", "CCN", "CC(=O)N", "C1CCCC1", "c1ccccc1", "c1ccc2ccccc2c1")
TOY_DIM = 6


class ToyDecoder:
    """z → 'C' + one fragment per coordinate (the interval [-2, 2] split evenly)."""

    latent_dim = TOY_DIM

    def decode(self, z: np.ndarray) -> list[str | None]:
        bins = np.clip(((np.asarray(z) + 2) / 4 * len(FRAGMENTS)).astype(int), 0,
                       len(FRAGMENTS) - 1)
        return [chem.canonical_smiles("C" + "".join(FRAGMENTS[b] for b in row)) for row in bins]


class ConstantDecoder(ToyDecoder):
    """Every z decodes to the same molecule: a search that can never find anything new."""

    def decode(self, z: np.ndarray) -> list[str | None]:
        return ["CCO"] * len(z)


def warm_start(oracle: Oracle, rng: np.random.Generator) -> opt.WarmStart:
    """A poor initial design (small fragments), scored through the oracle like the stage does."""
    design = rng.normal(-1.2, 0.3, (12, TOY_DIM))
    fitness = opt.LatentScorer(ToyDecoder(), oracle, "init").decode_and_score(design)
    return opt.WarmStart(design, fitness, np.zeros(TOY_DIM), 1.0)


def make(method: str, oracle: Oracle, warm: opt.WarmStart, rng: np.random.Generator):
    from molvae.latent.surrogate import fit_surrogate

    scorer = opt.LatentScorer(ToyDecoder(), oracle, method)
    common = {"batch_size": 12, "rng": rng}
    if method == "random":
        return RandomSearch(scorer, warm, **common)
    if method == "cmaes":
        return CmaEs(scorer, warm, options=CmaEsOptions(sigma=0.5), **common)
    if method == "bo":
        return TrustRegionBO(scorer, warm, options=BOOptions(), candidates=300, **common)

    def refit(z: np.ndarray, y: np.ndarray):
        return fit_surrogate(z, opt.fill_failures(y), epochs=40, hidden_dim=32)

    options = GradientOptions(ascent_steps=12, learning_rate=0.1, refit_every=5)
    return GradientAscent(scorer, warm, options=options, surrogate=refit(warm.z, warm.y),
                          refit=refit, snapshots=3, **common)


@pytest.mark.parametrize("method", ["random", "cmaes", "bo", "gradient"])
def test_each_optimizer_climbs_and_respects_the_budget(method: str) -> None:
    rng = np.random.default_rng(0)
    oracle = Oracle(parse_objective("heavy_atoms"), budget=60)
    warm = warm_start(oracle, rng)
    start_best = np.nanmax(warm.y)
    stop = opt.run_search(make(method, oracle, warm, rng), oracle)
    assert stop == "budget"
    assert oracle.calls == 60
    table = oracle.table()
    assert len(table) == 60 and table["oracle_call"].max() == 60
    found = table[table["method"] == method]["score"].max()
    assert found > start_best + 2, f"{method} found {found}, the start had {start_best}"


def test_a_search_that_finds_nothing_new_stops_early() -> None:
    oracle = Oracle(parse_objective("qed"), budget=50)
    scorer = opt.LatentScorer(ConstantDecoder(), oracle, "random")
    warm = opt.WarmStart(np.zeros((0, TOY_DIM)), np.zeros(0), np.zeros(TOY_DIM))
    search = RandomSearch(scorer, warm, 4, np.random.default_rng(0))
    assert opt.run_search(search, oracle, patience=5) == "stalled"
    assert oracle.calls == 1
    qed = chem.smiles_properties("CCO")["qed"]
    assert auc_every_call(oracle.top_trace, oracle.budget) == pytest.approx(qed)


def test_fill_failures_ranks_nan_last() -> None:
    filled = opt.fill_failures(np.array([0.5, np.nan, 0.9]))
    assert filled[1] < 0.5 and filled[0] == 0.5
    assert opt.fill_failures(np.array([np.nan, np.nan])).tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- the stage, tiny real model

def run(tiny_model: Path, prepared_dir: Path, tmp_path: Path, **options: object):
    from molvae.stages.optimize import OptimizeConfig, run

    config = from_dict(OptimizeConfig, {
        "model": str(tiny_model), "data": str(prepared_dir), "out": str(tmp_path / "out"),
        "budget": 12, "batch_size": 8, "init_size": 8, "patience": 3, "device": "cpu",
        "gradient_ascent_steps": 5, "gradient_surrogate_epochs": 10,
        "gradient_surrogate_hidden": 16, "grid_size": 0,
        "allow_degenerate": True, **options})
    return run(config)


def test_novel_only_keeps_training_molecules_out_of_the_solutions(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path) -> None:
    from molvae.model.store import load_model
    from molvae.optim.optimize import resolved_guards
    from molvae.optim.settings import Settings

    train = pd.read_parquet(prepared_dir / "train.parquet")
    model = load_model(tiny_model, "cpu")
    options = {"data": str(prepared_dir)}
    assert resolved_guards(from_dict(Settings, options), model, train).known == frozenset()
    guarded = resolved_guards(from_dict(Settings, {**options, "novel_only": True}), model, train)
    assert guarded.known == frozenset(train["smiles"])
    result = run(tiny_model, prepared_dir, tmp_path, method="random", novel_only=True)
    table = pd.read_csv(result.out / "candidates.csv")
    assert table.loc[table["solution"], "novel"].all()
    with pytest.raises(ConfigError, match="novel_only needs data"):
        from_dict(Settings, {"novel_only": True})


def test_size_guard_counts_heavy_atoms_when_prep_computed_no_properties(
        tiny_model: Path, prepared_dir: Path) -> None:
    """Data prepared with ``--properties none`` has no heavy_atoms column: the guard's default
    (the training set's largest molecule) is counted from the SMILES, not a KeyError."""
    from molvae.model.store import load_model
    from molvae.optim.optimize import resolved_guards
    from molvae.optim.settings import Settings

    train = pd.read_parquet(prepared_dir / "train.parquet")
    settings = from_dict(Settings, {"data": str(prepared_dir)})
    model = load_model(tiny_model, "cpu")
    with_column = resolved_guards(settings, model, train)
    without = resolved_guards(settings, model, train.drop(columns="heavy_atoms"))
    assert without.max_heavy_atoms == with_column.max_heavy_atoms == train["heavy_atoms"].max()
    assert without.max_tokens == with_column.max_tokens == train["n_tokens"].max()


@pytest.mark.parametrize("method", ["random", "cmaes", "bo", "gradient", "policy"])
def test_stage_stays_within_budget_and_writes_outputs(method: str, tiny_model: Path,
                                                      prepared_dir: Path,
                                                      tmp_path: Path) -> None:
    result = run(tiny_model, prepared_dir, tmp_path, method=method,
                 objective="tests.unit.optim.test_objectives:ring_atoms")
    out = tmp_path / "out"
    table = pd.read_csv(out / "candidates.csv")
    assert result.metrics["n_calls"] == len(table) <= 12
    assert table["oracle_call"].max() == len(table)
    assert {"smiles", "score", "passes_filters", "novel", "oracle_call", "method", *chem
            .PROPERTY_NAMES} <= set(table.columns)
    assert (out / "trace.png").stat().st_size > 0 and (out / "summary.json").is_file()
    assert len(pd.read_csv(out / "trace.csv")) == result.metrics["n_calls"]


@pytest.mark.parametrize("method", ["random", "policy"])
def test_constrained_mode_reports_similarity_and_improvement(method: str, tiny_model: Path,
                                                              prepared_dir: Path,
                                                              tmp_path: Path) -> None:
    start = pd.read_parquet(prepared_dir / "test.parquet")["smiles"].iloc[0]
    result = run(tiny_model, prepared_dir, tmp_path, method=method, objective="qed",
                 start=start, min_similarity=0.3)
    table = pd.read_csv(tmp_path / "out" / "candidates.csv")
    assert table["similarity"].between(0, 1).all()
    assert (table.loc[table["solution"], "similarity"] >= 0.3).all()
    assert (table.loc[~table["feasible"], "solution"] == False).all()  # noqa: E712
    assert result.metrics["start_score"] == pytest.approx(chem.smiles_properties(start)["qed"])
    assert "improvement" in result.metrics


def test_bad_config_names_the_key(tiny_model: Path) -> None:
    from molvae.stages.optimize import OptimizeConfig

    with pytest.raises(ConfigError, match="method must be one of"):
        from_dict(OptimizeConfig, {"model": str(tiny_model), "method": "annealing"})
    with pytest.raises(ConfigError, match="objective: .*not understood"):
        from_dict(OptimizeConfig, {"model": str(tiny_model), "objective": "potency"})
    with pytest.raises(ConfigError, match="start 'C1CC' is not a valid SMILES"):
        from_dict(OptimizeConfig, {"model": str(tiny_model), "start": "C1CC"})
