"""The link molvae prints for a run opens MLflow's model-training view, not the GenAI one."""

import mlflow

from molvae.tracking.runs import run_link


def test_a_server_link_and_a_local_store_link(monkeypatch) -> None:
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://mlflow.team:5000/")
    assert run_link("3", "abc") == \
        "http://mlflow.team:5000/#/experiments/3/runs/abc?workflowType=machine_learning"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:////work/mlflow.db")
    local = run_link("3", "abc")
    assert local.startswith("http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=")
    assert "mlflow ui --backend-store-uri sqlite:////work/mlflow.db" in local
