"""Tracking against a real MLflow store: one run per stage, nesting, metric hygiene."""

from pathlib import Path

import pytest

from molvae.tracking import NullTracker, is_model_uri, local_model_dir, stage_run
from molvae.tracking.runs import metric_name


def test_metric_names_are_made_legal() -> None:
    assert metric_name("unique@1000") == "unique_at_1000"
    assert metric_name("FCD/Test") == "FCD/Test"


def test_disabled_tracking_records_nothing_and_needs_no_store(tmp_path: Path) -> None:
    with stage_run("prep", {"a": 1}, enabled=False) as tracker:
        assert isinstance(tracker, NullTracker) and tracker.run_id is None
        tracker.log_metrics({"x": 1.0})


def test_stage_runs_nest_and_skip_non_finite_metrics(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "unit")
    with stage_run("pipeline", {"stages": "prep"}) as parent:
        with stage_run("prep", {"inputs": ["a.csv"], "nested": {"k": 2}}) as child:
            child.log_metrics({"n_kept": 3, "bad": float("nan"), "none": None})
            child_id = child.run_id
    run = mlflow.get_run(child_id)
    assert run.data.tags["mlflow.parentRunId"] == parent.run_id
    assert run.data.params == {"inputs": "['a.csv']", "nested.k": "2"}
    assert run.data.metrics == {"n_kept": 3.0}
    assert run.data.tags["stage"] == "prep"


def test_local_model_dir_passes_folders_through() -> None:
    assert local_model_dir("some/folder") == Path("some/folder")
    assert is_model_uri("models:/molvae-vae/1") and is_model_uri("runs:/abc/model")
    assert not is_model_uri("model")
