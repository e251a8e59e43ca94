"""What a person sees in the MLflow UI: the experiment kind, the parent run's headline numbers,
datasets and upstream links on stage runs, and described, tagged, aliased registry versions."""

from pathlib import Path

import yaml

from molvae.pipeline import load_pipeline, run_pipeline
from molvae.tracking import configure
from tests.conftest import FIXTURES

TRAIN = {"preset": "tiny", "epochs": 1, "batch_size": 32, "eval_samples": 8, "eval_molecules": 8,
         "device": "cpu", "threads": 1, "allow_degenerate": True}


def write_pipeline(path: Path, train: dict) -> Path:
    path.write_text(yaml.safe_dump({"name": "views", "workdir": str(path.parent / "runs"),
                                    "stages": {
        "prep": {"inputs": [str(FIXTURES / "molecules.csv")], "workers": 1},
        "train": {**TRAIN, **train},
        "sample": {"n": 12, "seed": 0, "device": "cpu"},
    }}))
    return path


def test_the_experiment_opens_on_its_runs(mlflow_store: str) -> None:
    import mlflow

    configure()
    experiment = mlflow.get_experiment_by_name("molvae")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    mlflow.MlflowClient().delete_experiment_tag(experiment.experiment_id,
                                                "mlflow.experimentKind")
    configure()  # an experiment made before molvae tagged it gains the tag
    tags = mlflow.get_experiment_by_name("molvae").tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_parent_run_carries_headlines_and_stage_runs_link_their_inputs(
        tmp_path: Path, mlflow_runs) -> None:
    import mlflow

    path = write_pipeline(tmp_path / "p.yaml", {})
    assert run_pipeline(load_pipeline(path)) == {"prep": "ran", "train": "ran", "sample": "ran"}
    runs = mlflow_runs()
    parent = runs[runs["tags.stage"] == "pipeline"].iloc[0]
    for metric in ("prep/n_kept", "train/best_val_loss", "train/active_units",
                   "sample/validity", "sample/uniqueness"):
        assert f"metrics.{metric}" in parent.index and parent[f"metrics.{metric}"] >= 0, metric
    assert parent["tags.molvae.ran"] == "prep,train,sample"

    by_stage = {stage: runs[runs["tags.stage"] == stage].iloc[0] for stage in ("prep", "train",
                                                                                "sample")}
    assert by_stage["train"]["tags.molvae.upstream.data"] == by_stage["prep"]["run_id"]
    assert by_stage["sample"]["tags.molvae.upstream.model"] == by_stage["train"]["run_id"]
    inputs = mlflow.get_run(by_stage["train"]["run_id"]).inputs.dataset_inputs
    assert sorted(i.dataset.name.split("/")[1] for i in inputs) == [
        "test.parquet", "train.parquet", "val.parquet"]
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "data"
    raw = mlflow.get_run(by_stage["prep"]["run_id"]).inputs.dataset_inputs
    assert [i.dataset.name for i in raw] == ["fixtures/molecules.csv"]
    assert '"smiles"' in raw[0].dataset.schema

    assert mlflow.search_registered_models() == []  # a tiny model is throwaway: not registered
    assert run_pipeline(load_pipeline(path)) == {"prep": "cached", "train": "cached",
                                                 "sample": "cached"}
    assert len(mlflow_runs()) == len(runs)  # a fully cached rerun records no empty parent
    resampled = load_pipeline(path, overrides=["sample.seed=1"])
    assert run_pipeline(resampled, only="sample") == {"sample": "ran"}
    newest = mlflow_runs()
    parent = newest[newest["tags.stage"] == "pipeline"].iloc[0]  # newest first
    assert parent["tags.molvae.ran"] == "sample"
    assert "metrics.sample/validity" in parent.index
    resampled_run = newest[newest["tags.stage"] == "sample"].iloc[0]
    assert resampled_run["tags.molvae.upstream.model"] == by_stage["train"]["run_id"]


def test_registered_versions_are_described_tagged_and_the_best_is_aliased(
        tmp_path: Path, mlflow_store: str) -> None:
    import mlflow

    path = write_pipeline(tmp_path / "p.yaml", {"registered_name": "views-vae"})
    for seed in (0, 1):
        run_pipeline(load_pipeline(path, overrides=[f"train.seed={seed}"]))
    client = mlflow.MlflowClient()
    versions = client.search_model_versions("name='views-vae'")
    assert len(versions) == 2
    for version in versions:
        assert version.description.startswith("Trained on ") and "tiny preset" in \
            version.description
        assert version.tags["preset"] == "tiny" and "prep-" in version.tags["data"]
        assert {"best_val_loss", "molecule_accuracy", "active_units"} <= set(version.tags)
    best = min(versions, key=lambda v: float(v.tags["best_val_loss"]))
    assert client.get_model_version_by_alias("views-vae", "best").version == best.version
    assert "best" in client.get_registered_model("views-vae").description
