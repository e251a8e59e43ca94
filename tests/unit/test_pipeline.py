"""Pipeline files: validation, caching, selective reruns, the parent MLflow run."""

from pathlib import Path

import pytest
import yaml

from molvae.cli import main
from molvae.config import ConfigError
from molvae.pipeline import load_pipeline, run_pipeline
from tests.conftest import FIXTURES


def write_pipeline(path: Path, stages: dict, **top) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "workdir": str(path.parent / "runs"),
                                    "stages": stages, **top}))
    return path


PREP = {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1}


def test_rerun_skips_and_changed_key_reruns(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path / "p.yaml", {"prep": PREP})
    first = run_pipeline(load_pipeline(path), track=False)
    assert first == {"prep": "ran"}
    assert run_pipeline(load_pipeline(path), track=False) == {"prep": "cached"}
    changed = load_pipeline(path, overrides=["prep.seed=3"])
    assert changed.stages[0].folder != load_pipeline(path).stages[0].folder
    assert run_pipeline(changed, track=False) == {"prep": "ran"}
    assert run_pipeline(load_pipeline(path), force=True, track=False) == {"prep": "ran"}


def test_half_written_stage_is_not_trusted(tmp_path: Path) -> None:
    path = write_pipeline(tmp_path / "p.yaml", {"prep": PREP})
    stage = load_pipeline(path).stages[0]
    stage.folder.mkdir(parents=True)
    (stage.folder / "train.parquet").write_text("half written")
    assert run_pipeline(load_pipeline(path), track=False) == {"prep": "ran"}
    assert (stage.folder / ".done.json").is_file()
    parts = sorted((stage.folder / "train.parquet").glob("*.parquet"))
    assert parts and all(p.read_bytes()[:4] == b"PAR1" for p in parts)


@pytest.mark.parametrize("stages, message", [
    ({"prep": {**PREP, "bogus": 1}}, "prep: unknown key 'bogus'"),
    ({"prepare": PREP}, "unknown stage 'prepare'"),
    ({"prep": [1, 2]}, "stage 'prep' must be a mapping"),
    ({"prep": {**PREP, "split": "nope"}}, "split must be"),
])
def test_bad_pipeline_is_a_clear_error(tmp_path: Path, stages: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_pipeline(write_pipeline(tmp_path / "p.yaml", stages))


def test_bad_top_level_and_overrides(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_pipeline(write_pipeline(tmp_path / "p.yaml", {"prep": PREP}, stagse={}))
    path = write_pipeline(tmp_path / "q.yaml", {"prep": PREP})
    with pytest.raises(ConfigError, match="stage 'train' is not in the pipeline"):
        load_pipeline(path, overrides=["train.epochs=1"])
    with pytest.raises(ConfigError, match="stage.key=value"):
        load_pipeline(path, overrides=["epochs"])
    with pytest.raises(ConfigError, match="--only train: not a stage"):
        run_pipeline(load_pipeline(path), only="train", track=False)
    with pytest.raises(ConfigError, match="config file not found"):
        load_pipeline(tmp_path / "missing.yaml")


def test_pipeline_run_is_a_parent_mlflow_run(tmp_path: Path, mlflow_runs) -> None:
    path = write_pipeline(tmp_path / "p.yaml", {"prep": PREP})
    run_pipeline(load_pipeline(path))
    runs = mlflow_runs()
    parent = runs[runs["tags.stage"] == "pipeline"].iloc[0]
    child = runs[runs["tags.stage"] == "prep"].iloc[0]
    assert child["tags.mlflow.parentRunId"] == parent["run_id"]
    assert parent["tags.mlflow.runName"] == "t: prep"


def test_workdir_on_the_command_line_replaces_the_files(tmp_path: Path) -> None:
    """``molvae run FILE --workdir DIR`` runs and caches the stages under DIR, and the
    file's own workdir stays untouched."""
    path = write_pipeline(tmp_path / "p.yaml", {"prep": PREP})
    other = tmp_path / "elsewhere"
    assert main(["run", str(path), "--workdir", str(other), "--no-track", "-q"]) == 0
    assert load_pipeline(path, workdir=other).stages[0].folder.parent == other
    assert run_pipeline(load_pipeline(path, workdir=other), track=False) == {"prep": "cached"}
    assert not (tmp_path / "runs").exists()
