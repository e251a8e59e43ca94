"""A pipeline of every stage, tiny: runs end to end, reruns nothing, reruns only what changed."""

from pathlib import Path

import pandas as pd
import pytest
import yaml

from molvae.pipeline import load_pipeline, run_pipeline
from tests.conftest import FIXTURES

STAGES = {
    "prep": {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1},
    "train": {"preset": "tiny", "epochs": 1, "batch_size": 32, "eval_samples": 8,
              "eval_molecules": 8, "log_model": False, "device": "cpu",
              "allow_degenerate": True},
    "sample": {"n": 30, "seed": 0, "device": "cpu"},
    "score": {"fcd": False, "workers": 1},
    "regress": {"properties": ["heavy_atoms"], "regressors": ["ridge"], "cv_folds": 2,
                "surrogate_epochs": 3, "surrogate_hidden": 8, "device": "cpu"},
    "optimize": {"objective": "qed", "method": "random", "budget": 20, "device": "cpu",
                 "allow_degenerate": True},
}


@pytest.mark.integration
def test_every_stage_runs_then_caches_then_reruns_only_downstream(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump({"name": "all", "workdir": str(tmp_path / "runs"),
                                    "stages": STAGES}))
    assert run_pipeline(load_pipeline(path), track=False) == {name: "ran" for name in STAGES}
    folders = {s.name: s.folder for s in load_pipeline(path).stages}
    assert len(pd.read_csv(folders["sample"] / "samples.csv")) == 30
    assert (folders["score"] / "metrics.json").is_file()
    assert (folders["optimize"] / "candidates.csv").is_file()

    assert set(run_pipeline(load_pipeline(path), track=False).values()) == {"cached"}

    changed = run_pipeline(load_pipeline(path, overrides=["sample.n=40"]), track=False)
    assert changed == {"prep": "cached", "train": "cached", "sample": "ran", "score": "ran",
                       "regress": "cached", "optimize": "cached"}


def test_shipped_pipelines_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pipeline in pipelines/ parses (stage names, keys, values) from the project root."""
    root = Path(__file__).parents[2]
    monkeypatch.chdir(root)  # pipelines name files relative to the project root
    shipped = sorted((root / "pipelines").glob("*.yaml"))
    assert {p.stem for p in shipped} >= {"demo", "design", "moses"}
    for path in shipped:
        assert load_pipeline(path).stages, path
