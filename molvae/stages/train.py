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

DEFAULT_REGISTERED_NAME = "molvae-vae"


def collapse_advice(result: TrainResult) -> str | None:
    """What to change when the finished model's latent space collapsed (None if it did not).

    With 0 active units the decoder ignores z: reconstruction fails, regression on z finds
    nothing and optimization in z cannot steer, so every stage after this one is wasted.
    """
    history = result.progress.history
    if not result.progress.finished or not history or history[-1]["active_units"] > 0:
        return None
    last = history[-1]
    if "codebook_perplexity" in last:  # a VQ model
        return (f"the codes collapsed: every molecule got the same codes after {last['epoch']} "
                f"epoch(s) (molecules reconstructed {last['molecule_accuracy']:.0%}); train "
                "longer (--resume with more --epochs) or with a higher lr; set "
                "allow_degenerate to keep this model anyway")
    return (f"the latent space collapsed: 0 active units after {last['epoch']} epoch(s) "
            f"(molecules reconstructed {last['molecule_accuracy']:.0%}); lower beta_max, "
            "raise free_bits, lengthen kl_warmup_steps or train longer (--resume with more "
            "--epochs); set allow_degenerate to keep this model anyway")


def run(config: TrainConfig, tracker: Tracker | None = None) -> TrainResult:
    """The ``train`` stage: train, then attach history and the best model to the run; a
    collapsed model fails the stage (after its history is attached) unless allowed."""
    tracker = tracker or Tracker()
    result = train_model(config, tracker)
    out = Path(config.out)
    if int(os.environ.get("RANK", "0")) != 0 or not (out / MODEL_FILE).is_file():
        return result
    tracker.log_metrics({"best_val_loss": result.progress.best_val_loss,
                         "epochs_completed": result.progress.epoch})
    for name in ("history.csv", "latent.json", "code_prior.csv"):
        if (out / name).is_file():
            tracker.log_artifact(out / name)
    advice = collapse_advice(result)
    if advice and not config.allow_degenerate:
        raise ValueError(advice)
    if config.log_model and result.finished:  # a VQ model: its code prior trained too
        from molvae.tracking.serving import log_model

        headline, p = result.headline(), result.progress
        description = (f"Trained on {config.data} with the {config.preset} preset for "
                       f"{p.epoch} epoch(s); best val_loss {p.best_val_loss:.4g} at epoch "
                       f"{p.best_epoch}.")
        tags = {"data": config.data, "preset": config.preset,
                **{k: f"{v:.4g}" for k, v in headline.items()}}
        result.model_uri = log_model(tracker, out, registered_name(config), description, tags)
    return result


def registered_name(config: TrainConfig) -> str | None:
    """The registry name to add the model under, or None: an explicit name always registers
    ('' never); by default real runs register as molvae-vae, while throwaway ones (the
    ``tiny`` preset, a ``max_steps`` cap) stay out so tests and trials do not bury the
    models people serve."""
    if config.registered_name is not None:
        return config.registered_name or None
    throwaway = config.preset == "tiny" or config.max_steps is not None
    return None if throwaway else DEFAULT_REGISTERED_NAME
