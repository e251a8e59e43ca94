"""The train stage: fit a SELFIES VAE on a prepared folder, then attach the history and the
best model to the MLflow run (and the model registry)."""

from __future__ import annotations

import os
from pathlib import Path

from molvae.model.store import MODEL_FILE
from molvae.tracking import Tracker
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model

__all__ = ["TrainConfig", "TrainResult", "run"]


def run(config: TrainConfig, tracker: Tracker) -> TrainResult:
    """The ``train`` stage: train, then attach history and the best model to the run."""
    result = train_model(config, tracker)
    out = Path(config.out)
    if int(os.environ.get("RANK", "0")) != 0 or not (out / MODEL_FILE).is_file():
        return result
    tracker.log_metrics({"best_val_loss": result.progress.best_val_loss,
                         "epochs_completed": result.progress.epoch})
    for name in ("history.csv", "latent.json"):
        tracker.log_artifact(out / name)
    if config.log_model and result.progress.finished:
        from molvae.tracking.serving import log_model

        result.model_uri = log_model(tracker, out, config.registered_name or None)
    return result
