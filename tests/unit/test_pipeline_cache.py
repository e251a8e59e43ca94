"""The pipeline cache keys a stage on the contents of the files it reads, not only their names."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from molvae.pipeline import load_pipeline, run_pipeline
from tests.conftest import FIXTURES


def write_pipeline(path: Path, stages: dict) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "workdir": str(path.parent / "runs"),
                                    "stages": stages}))
    return path


def digest(path: Path, stage: str) -> str:
    return next(s.digest for s in load_pipeline(path).stages if s.name == stage)


def test_editing_an_input_file_reruns_prep(tmp_path: Path) -> None:
    table = tmp_path / "molecules.csv"
    pd.read_csv(FIXTURES / "molecules.csv").to_csv(table, index=False)
    path = write_pipeline(tmp_path / "p.yaml", {"prep": {"inputs": [str(table)], "workers": 1}})
    assert run_pipeline(load_pipeline(path), track=False) == {"prep": "ran"}
    assert run_pipeline(load_pipeline(path), track=False) == {"prep": "cached"}
    pd.read_csv(table).head(60).to_csv(table, index=False)
    edited = load_pipeline(path)
    assert run_pipeline(edited, track=False) == {"prep": "ran"}
    rows = sum(len(pd.read_parquet(edited.stages[0].folder / f"{split}.parquet"))
               for split in ("train", "val", "test"))
    assert rows <= 60


def test_editing_an_objective_file_or_module_changes_the_optimize_digest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mpo = tmp_path / "mpo.yaml"
    mpo.write_text(yaml.safe_dump({"terms": [{"name": "qed", "weight": 1.0}]}))
    module = tmp_path / "cache_probe_oracle.py"
    module.write_text("def score(smiles):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    by_file = write_pipeline(tmp_path / "a.yaml", {"optimize": {"model": "m",
                                                                "objective": str(mpo)}})
    by_module = write_pipeline(tmp_path / "b.yaml", {"optimize": {
        "model": "m", "objective": "cache_probe_oracle:score"}})
    before = digest(by_file, "optimize"), digest(by_module, "optimize")
    mpo.write_text(yaml.safe_dump({"terms": [{"name": "qed", "weight": 2.0}]}))
    module.write_text("def score(smiles):\n    return 2.0\n")
    assert digest(by_file, "optimize") != before[0]
    assert digest(by_module, "optimize") != before[1]
    assert digest(by_module, "optimize") == digest(by_module, "optimize")


def test_a_training_stopped_early_is_not_cached_and_the_rerun_resumes_it(tmp_path: Path) -> None:
    train = {"preset": "tiny", "epochs": 2, "batch_size": 16, "eval_samples": 5,
             "eval_molecules": 5, "log_model": False, "device": "cpu", "max_steps": 2,
             "allow_degenerate": True}
    stages = {"prep": {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1},
              "train": train, "sample": {"n": 5, "device": "cpu"}}
    path = write_pipeline(tmp_path / "p.yaml", stages)
    assert run_pipeline(load_pipeline(path), track=False) == {
        "prep": "ran", "train": "stopped", "sample": "waiting"}
    folder = next(s.folder for s in load_pipeline(path).stages if s.name == "train")
    assert (folder / "checkpoint.pt").is_file() and not (folder / ".done.json").exists()
    write_pipeline(path, {**stages, "train": {**train, "max_steps": None}})
    assert run_pipeline(load_pipeline(path), track=False) == {
        "prep": "cached", "train": "ran", "sample": "ran"}
    history = pd.read_csv(folder / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
