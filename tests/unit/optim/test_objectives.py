"""Objective specs, desirability transforms, MPO files, user functions, and the oracle."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molvae import chem
from molvae.config import ConfigError
from molvae.optim.auc import auc_every_call
from molvae.optim.guards import Guards
from molvae.optim.objective_spec import parse_objective
from molvae.optim.objectives import Desirability, score_table
from molvae.optim.oracle import Oracle
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

LONG_CHAIN = "C" * 30


def ring_atoms(smiles: str) -> float:
    """A user oracle for the tests: ring atoms; raises on molecules without an 'N'."""
    if "N" not in smiles:
        raise ValueError("no nitrogen")
    return float(sum(ch in "123456789" for ch in smiles))


def not_a_number(smiles: str) -> str:
    return "high"


def score(spec: str, smiles: str) -> float:
    return parse_objective(spec).score(smiles, chem.smiles_properties(smiles))


@pytest.mark.parametrize("spec, prop, sign", [("qed", "qed", 1), ("plogp", "plogp", 1),
                                              ("sa", "sa", -1), ("min:mw", "mw", -1),
                                              ("max:tpsa", "tpsa", 1)])
def test_property_specs_orient_the_property(spec: str, prop: str, sign: int) -> None:
    props = chem.smiles_properties(ASPIRIN)
    assert score(spec, ASPIRIN) == pytest.approx(sign * props[prop])
    assert parse_objective(spec).surrogate_property == (prop, sign)


def test_range_is_one_inside_and_decays_outside() -> None:
    inside, near, far = (score("mw_range:170:190", s) for s in (ASPIRIN, "CCCCCCCCCCCCCC",
                                                                 LONG_CHAIN))
    assert inside == 1.0
    assert 0 < far < near < 1
    assert score("mw_range:170:190:100", LONG_CHAIN) > far  # a wider decay forgives more
    assert parse_objective("mw_range:170:190").surrogate_property is None


def test_similarity_is_one_for_the_target_itself() -> None:
    assert score(f"similarity:{ASPIRIN}", "OC(=O)c1ccccc1OC(C)=O") == pytest.approx(1.0)
    assert score(f"similarity:{ASPIRIN}", LONG_CHAIN) < 0.2


@pytest.mark.parametrize("kind, low, high, value, expected", [
    ("linear", 0, 10, 5, 0.5), ("linear", 0, 10, 20, 1.0), ("linear", 10, 0, 2.5, 0.75),
    ("sigmoid", 2, 4, 2, 0.05), ("sigmoid", 2, 4, 4, 0.95), ("sigmoid", 4, 2, 4, 0.05),
    ("range", 1, 2, 1.5, 1.0)])
def test_desirability_transforms(kind: str, low: float, high: float, value: float,
                                 expected: float) -> None:
    assert Desirability(kind, low, high)(value) == pytest.approx(expected)
    assert math.isnan(Desirability(kind, low, high)(math.nan))


def test_mpo_file_sums_and_multiplies(tmp_path: Path) -> None:
    total = tmp_path / "sum.yaml"
    total.write_text("combine: sum\nterms:\n  - {name: qed, weight: 2}\n"
                     "  - {name: sa, weight: 0.5}\n")
    props = chem.smiles_properties(PARACETAMOL)
    assert score(str(total), PARACETAMOL) == pytest.approx(2 * props["qed"] - 0.5 * props["sa"])
    product = tmp_path / "product.yaml"
    product.write_text(f"combine: product\nterms:\n  - qed\n"
                       f"  - {{name: 'similarity:{ASPIRIN}', weight: 2}}\n"
                       f"  - {{name: sa, transform: linear, low: 10, high: 1}}\n")
    sa_desirability = (10 - props["sa"]) / 9
    expected = props["qed"] * chem.similarity(PARACETAMOL, ASPIRIN) ** 2 * sa_desirability
    assert score(str(product), PARACETAMOL) == pytest.approx(expected)
    assert parse_objective(str(product)).needs is None  # similarity needs the structure


def test_user_function_objective_loads_and_failures_are_nan() -> None:
    objective = parse_objective("tests.unit.optim.test_objectives:ring_atoms")
    assert objective.score(PARACETAMOL, {}) == 2.0
    assert math.isnan(objective.score(ASPIRIN, {}))  # the function raised
    assert math.isnan(parse_objective("tests.unit.optim.test_objectives:not_a_number")
                      .score(ASPIRIN, {}))


@pytest.mark.parametrize("spec, message", [
    ("", "empty"), ("potency", "not understood"), ("max:potency", "unknown property 'potency'"),
    ("mw_range:300", "LOW:HIGH"), ("mw_range:450:300", "low <= high"),
    ("mw_range:a:300", "LOW must be a number"), ("similarity:C1CC(C", "not a valid SMILES"),
    ("no_such_module_xyz:score", "cannot import module"),
    ("tests.unit.optim.test_objectives:missing", "has no function 'missing'"),
    ("missing.yaml", "not found")])
def test_bad_specs_are_clear_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_objective(spec)


@pytest.mark.parametrize("body, message", [
    ("combine: mean\nterms: [qed]", "'sum' or 'product'"),
    ("combine: sum\nterms: []", "non-empty list"),
    ("combine: sum\nterms: [{name: qed, wieght: 2}]", "unknown key.*wieght"),
    ("combine: product\nterms: [qed, logp]", "'logp' is not in \\[0, 1\\]"),
    ("combine: sum\nterms: [{name: sa, transform: cubic, low: 1, high: 2}]", "transform must"),
    ("combine: sum\nterms: [{name: sa, transform: linear, low: 1}]", "no high"),
    ("combine: sum\nobjective: qed", "unknown key")])
def test_bad_mpo_files_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "mpo.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        parse_objective(str(path))


def test_score_table_uses_property_columns_only_when_it_can() -> None:
    table = pd.DataFrame({"smiles": [ASPIRIN, PARACETAMOL], "qed": [0.5, 0.7], "sa": [2.0, 3.0]})
    assert score_table(parse_objective("sa"), table).tolist() == [-2.0, -3.0]
    assert score_table(parse_objective("plogp"), table) is None  # no plogp column
    assert score_table(parse_objective(f"similarity:{ASPIRIN}"), table) is None


def test_oracle_caches_on_canonical_smiles_and_counts_unique_molecules() -> None:
    oracle = Oracle(parse_objective("qed"), budget=100)
    scores = oracle.query([ASPIRIN, "OC(=O)c1ccccc1OC(C)=O", ASPIRIN, None, INVALID,
                              PARACETAMOL])
    assert oracle.calls == 2
    assert scores[0] == scores[1] == scores[2] == pytest.approx(chem.smiles_properties(
        ASPIRIN)["qed"])
    assert np.isnan(scores[3]) and np.isnan(scores[4])
    oracle.query([PARACETAMOL, ASPIRIN])
    assert oracle.calls == 2
    assert list(oracle.trace()["oracle_calls"]) == [1, 2]


def test_oracle_stops_exactly_at_the_budget() -> None:
    molecules = ["C" * n for n in range(1, 11)]
    oracle = Oracle(parse_objective("heavy_atoms"), budget=4)
    scores = oracle.query(molecules)
    assert oracle.calls == 4 and oracle.exhausted
    assert np.isfinite(scores[:4]).all() and np.isnan(scores[4:]).all()
    assert np.isfinite(oracle.query(molecules[:2])).all()  # cached ones are still answered
    assert oracle.calls == 4 and len(oracle.table()) == 4


def test_nan_scores_never_win_and_guards_rank_last() -> None:
    oracle = Oracle(parse_objective("tests.unit.optim.test_objectives:ring_atoms"), budget=10,
                    guards=Guards(max_heavy_atoms=11))
    fitness = oracle.query([ASPIRIN, PARACETAMOL, "c1ccc2ccccc2c1CN", "C1CCCCC1CCN"
                               + "c1ccccc1" * 2])
    assert np.isnan(fitness[0])  # the function raised: NaN, not 0
    table = oracle.table()
    assert table["smiles"].iloc[0] == PARACETAMOL  # the only solution ranks first
    assert table["solution"].tolist() == [True, False, False, False]
    assert "heavy_atoms" in table.loc[table["smiles"] != PARACETAMOL, "filter_failures"
                                      ].str.cat()
    assert oracle.best_trace[-1] == 2.0


def test_guards_catch_macrocycles_pains_radicals_and_size() -> None:
    macrocycle = "C1CCCCCCCCCCC1"
    azo = "CN(C)c1ccc(N=Nc2ccccc2)cc1"
    radical = "CC(=O)N[CH]c1ccccc1"  # SELFIES decoding writes such unpaired electrons
    oracle = Oracle(parse_objective("qed"), budget=10,
                    guards=Guards(max_ring_size=8, pains=True, max_tokens=20, max_sa=6,
                                    known=frozenset({ASPIRIN}), radicals=True))
    oracle.query([macrocycle, azo, LONG_CHAIN, PARACETAMOL, ASPIRIN, radical])
    failures = dict(zip(oracle.table()["smiles"], oracle.table()["filter_failures"],
                        strict=True))
    assert "largest_ring 12 > 8" in failures[macrocycle]
    assert "pains" in failures[azo]
    assert "n_tokens 30 > 20" in failures[LONG_CHAIN]
    assert failures[ASPIRIN] == "in the training set"
    assert failures[PARACETAMOL] == ""
    assert failures["CC(=O)N[CH]c1ccccc1"] == "radical electrons 1"


def test_similarity_constraint_marks_dissimilar_molecules_infeasible() -> None:
    oracle = Oracle(parse_objective("logp"), budget=10, start=PARACETAMOL, min_similarity=0.4)
    methoxy = "COc1ccc(NC(C)=O)cc1"  # similarity 0.58 to paracetamol
    fitness = oracle.query([methoxy, LONG_CHAIN])
    table = oracle.table().set_index("smiles")
    assert table.loc[methoxy, "feasible"]
    assert not table.loc[LONG_CHAIN, "feasible"]  # higher logP, but not a solution
    assert np.isfinite(fitness[0]) and np.isnan(fitness[1])


def test_auc_counts_the_whole_budget() -> None:
    oracle = Oracle(parse_objective("heavy_atoms"), budget=10)
    oracle.query(["C", "CC"])
    # calls 1 and 2 have top-10 means 1 and 1.5; the last value fills up to the budget
    assert auc_every_call(oracle.top_trace, oracle.budget) == pytest.approx((1 + 1.5 * 9) / 10)
