"""Objectives a hostile or careless user can pass (issue 25, items 6, 11 and 12): code of the
standard library is refused and a result must be a real number; paid oracle calls survive a
rerun, a killed pipeline stage and an interrupted API call, and are not paid again; an
objective that fails on its whole first batch stops the run at once, saying so."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import molvae
from molvae.cli import main
from molvae.config import ConfigError, from_dict
from molvae.optim.objective_spec import parse_objective
from molvae.optim.oracle import Oracle
from molvae.pipeline import load_pipeline, run_pipeline
from tests.conftest import ASPIRIN, PARACETAMOL

HERE = "tests.unit.optim.test_trust_objectives"
ROOT = Path(__file__).parents[3]
CALLS: list[str] = []  # every molecule an objective of this module was called with (paid)
INTERRUPT: dict[str, int | None] = {"after": None}
shell = os.system  # a user module re-exporting a standard-library function


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    CALLS.clear()
    INTERRUPT["after"] = None
    yield
    INTERRUPT["after"] = None


def counted(smiles: str) -> float:
    """A good objective; each call is one paid for."""
    CALLS.append(smiles)
    if INTERRUPT["after"] is not None and len(CALLS) > INTERRUPT["after"]:
        raise KeyboardInterrupt  # Ctrl-C, or a scheduler killing the job
    return float(len(smiles))


def raises(smiles: str) -> float:
    CALLS.append(smiles)
    raise RuntimeError("docking server down")


def returns_none(smiles: str) -> None:
    CALLS.append(smiles)


def returns_text(smiles: str) -> str:
    CALLS.append(smiles)
    return "0.5"  # float() would take it: a string is not a score


def nan_for_oxygen(smiles: str) -> float:
    return math.nan if "O" in smiles else math.inf if "N" in smiles else 1.0


def run(tiny_model: Path, prepared_dir: Path, tmp_path: Path, **options: object):
    from molvae.stages.optimize import OptimizeConfig, run

    return run(from_dict(OptimizeConfig, {
        "model": str(tiny_model), "data": str(prepared_dir), "out": str(tmp_path / "out"),
        "method": "random", "budget": 10, "batch_size": 4, "patience": 3, "device": "cpu",
        "grid_size": 0, **options}))


# --- item 6: an import path is code, and must be the user's own ------------------------------

@pytest.mark.parametrize("spec", ["os:system", "subprocess:call", "builtins:eval",
                                  "os.path:exists", f"{HERE}:shell"])
def test_standard_library_import_paths_are_refused(spec: str) -> None:
    with pytest.raises(ConfigError, match="standard library"):
        parse_objective(spec)


def test_an_import_path_inside_an_mpo_file_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "mpo.yaml"
    path.write_text(yaml.safe_dump({"combine": "sum", "terms": [
        {"name": "qed", "weight": 1}, {"name": "subprocess:call", "weight": 1}]}))
    with pytest.raises(ConfigError, match="'subprocess' is part of Python's standard library"):
        parse_objective(str(path))


def test_a_result_that_is_not_a_real_number_fails_naming_the_objective() -> None:
    from molvae.optim.objectives import real_number

    objective = parse_objective(f"{HERE}:returns_text")
    assert math.isnan(objective.score(ASPIRIN, {}))
    record = Oracle(objective, budget=4).measure(ASPIRIN)
    assert math.isnan(record["score"])
    assert record["score_failure"] == (f"objective '{HERE}:returns_text' returned str '0.5', "
                                       "not a real number")
    assert [real_number(v) for v in (np.float32(0.5), np.array(2.0), 3, None, "1", 1j)] == \
        [0.5, 2.0, 3.0, None, None, None]


def test_help_and_readme_say_that_an_import_path_runs_code(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "running its code as `import` would" in text
    assert "the standard library is refused" in text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "runs code as an `import` does" in readme


# --- item 11: paid calls are never deleted, and a rerun does not pay for them again -------------

def test_the_oracle_reuses_its_log_and_never_truncates_it(tmp_path: Path) -> None:
    log = tmp_path / "calls.csv"
    first = Oracle(parse_objective(f"{HERE}:counted"), budget=3, log_path=log)
    paid = first.query([ASPIRIN, PARACETAMOL, "CCC"])
    assert len(CALLS) == 3
    CALLS.clear()
    again = Oracle(parse_objective(f"{HERE}:counted"), budget=3, log_path=log)
    fitness = again.query([ASPIRIN, PARACETAMOL, "CCCC"])
    assert CALLS == ["CCCC"]  # only the new molecule is paid for
    assert fitness[:2].tolist() == paid[:2].tolist()
    assert again.calls == 3 and again.reused == 2 and again.exhausted  # reused ones still count
    assert sorted(pd.read_csv(log)["smiles"]) == sorted([*first.records, "CCCC"])


def test_a_log_of_another_objective_is_moved_aside_and_reused_later(tmp_path: Path) -> None:
    log = tmp_path / "calls.csv"
    Oracle(parse_objective(f"{HERE}:counted"), budget=2, log_path=log).query(
        [ASPIRIN, PARACETAMOL])
    other = Oracle(parse_objective("heavy_atoms"), budget=2, log_path=log)
    assert len(pd.read_csv(log)) == 2  # nothing moves before a call is made
    other.query(["CCC"])
    aside = pd.read_csv(tmp_path / "calls-1.csv")
    assert len(aside) == 2 and set(aside["objective"]) == {f"{HERE}:counted"}
    assert pd.read_csv(log)["smiles"].tolist() == ["CCC"]
    CALLS.clear()
    back = Oracle(parse_objective(f"{HERE}:counted"), budget=2, log_path=log)
    back.query([ASPIRIN, PARACETAMOL])
    assert CALLS == [] and back.reused == 2


def test_rerunning_optimize_into_the_same_out_pays_nothing_twice(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path) -> None:
    first = run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:counted")
    calls = pd.read_csv(tmp_path / "out" / "calls.csv")
    assert len(CALLS) == len(calls) == first.metrics["n_calls"] > 0
    CALLS.clear()
    second = run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:counted")
    assert CALLS == []  # the same seed proposes the same molecules: all answered from the log
    assert second.metrics["n_reused_calls"] == second.metrics["n_calls"] == len(calls)
    assert second.metrics["top1"] == first.metrics["top1"]
    with pytest.raises(ValueError, match="docking server down"):  # a rerun that fails...
        run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:raises")
    kept = pd.concat([pd.read_csv(f) for f in (tmp_path / "out").glob("calls*.csv")])
    assert set(calls["smiles"]) <= set(kept["smiles"])  # ...keeps what was paid for


def test_a_killed_pipeline_stage_keeps_its_paid_calls(tiny_model: Path,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "workdir": str(tmp_path / "runs"), "stages": {
        "optimize": {"model": str(tiny_model), "objective": f"{HERE}:counted",
                     "method": "random", "budget": 8, "batch_size": 4, "patience": 3,
                     "device": "cpu", "grid_size": 0, "allow_degenerate": True}}}))
    INTERRUPT["after"] = 3
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(load_pipeline(path), track=False)
    folder = load_pipeline(path).stages[0].folder
    assert len(pd.read_csv(folder / "calls.csv")) == 3
    INTERRUPT["after"] = None
    CALLS.clear()
    assert run_pipeline(load_pipeline(path), track=False) == {"optimize": "ran"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_reused_calls"] == 3
    assert len(CALLS) == summary["n_calls"] - 3


def test_an_interrupted_api_run_keeps_the_folder_it_names(
        tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    INTERRUPT["after"] = 3
    with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):
        molvae.optimize(str(tiny_model), objective=counted, budget=8, method="random",
                        device="cpu", seed=3, batch_size=4)
    named = [r for r in caplog.records if "partial results in" in r.getMessage()]
    assert named
    folder = Path(named[0].args[1])
    try:
        assert len(pd.read_csv(folder / "calls.csv")) == 3
        assert json.loads((folder / "summary.json").read_text())["stop_reason"] == "interrupted"
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


# --- item 12: a broken objective is named at once, NaN and inf are warned about ----------------

@pytest.mark.parametrize("name, error", [
    ("raises", "raised RuntimeError: docking server down"),
    ("returns_none", "returned NoneType None, not a real number"),
    ("returns_text", "returned str '0.5', not a real number")])
def test_a_broken_objective_stops_after_its_first_batch(
        tiny_model: Path, prepared_dir: Path, tmp_path: Path, name: str, error: str) -> None:
    with pytest.raises(ValueError) as caught:
        run(tiny_model, prepared_dir, tmp_path, objective=f"{HERE}:{name}", budget=40)
    message = str(caught.value)
    assert f"objective '{HERE}:{name}' failed on all" in message and error in message
    assert "first batch" in message and "collapsed" not in message
    assert 0 < len(CALLS) <= 4  # one batch paid for, not the budget


def test_a_nan_weight_is_not_blamed_on_the_model(tiny_model: Path, prepared_dir: Path,
                                                 tmp_path: Path) -> None:
    path = tmp_path / "mpo.yaml"
    path.write_text("combine: sum\nterms:\n  - {name: qed, weight: .nan}\n")
    with pytest.raises(ValueError) as caught:
        run(tiny_model, prepared_dir, tmp_path, objective=str(path), budget=40)
    assert "mpo.yaml" in str(caught.value) and "collapsed" not in str(caught.value)


@pytest.mark.parametrize("molecules, word", [(["CCC", "CCO"], "NaN"), (["CCC", "CCN"], "inf")])
def test_nan_and_inf_scores_are_warned_about(molecules: list[str], word: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    oracle = Oracle(parse_objective(f"{HERE}:nan_for_oxygen"), budget=10)
    with caplog.at_level(logging.WARNING):
        oracle.query(molecules)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "nan_for_oxygen" in warned and word in warned


def test_only_a_wholly_failed_first_batch_stops_the_oracle() -> None:
    from molvae.optim.oracle import ObjectiveError

    with pytest.raises(ObjectiveError, match="docking server down"):
        Oracle(parse_objective(f"{HERE}:raises"), budget=100).query(["CCO", "CCN"])
    lenient = Oracle(parse_objective(f"{HERE}:raises"), budget=100, fail_fast=False)
    assert np.isnan(lenient.query(["CCO", "CCN"])).all()
    working = Oracle(parse_objective(f"{HERE}:nan_for_oxygen"), budget=100)
    working.query(["CCO", "CCC"])  # one molecule scored: the objective works
    assert np.isnan(working.query(["OCO"])).all()  # a later failure is the molecule's
