"""The stage registry: each stage's name, config dataclass and function, and how one is run.

Both the CLI and pipelines look stages up here, so a stage is defined once. Entries name
modules as strings so that ``molvae --help`` does not import torch, RDKit or MLflow.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from molvae import config as cfg
from molvae import tracking


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: ``module.function(config, tracker) -> result``."""

    name: str
    module: str
    config_class: str
    function: str
    help: str

    def config_type(self) -> type:
        return getattr(importlib.import_module(self.module), self.config_class)

    def callable(self) -> Any:
        return getattr(importlib.import_module(self.module), self.function)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prep", "molvae.data", "PrepConfig", "prep",
          "standardize molecules, compute properties, SELFIES, vocabulary and splits"),
    Stage("train", "molvae.train", "TrainConfig", "run_train",
          "train the SELFIES VAE (KL annealing, checkpoints, --resume, torchrun DDP)"),
    Stage("sample", "molvae.sample", "SampleConfig", "run_sample",
          "generate molecules from the prior of a trained model"),
    Stage("score", "molvae.score", "ScoreConfig", "run_score",
          "MOSES-style quality report of generated molecules (validity, FCD, SNN, ...)"),
    Stage("regress", "molvae.regress", "RegressConfig", "run_regress",
          "predict properties from the latent space: regressors, CV scores, surrogates"),
    Stage("optimize", "molvae.optimize", "OptimizeConfig", "run_optimize",
          "optimize an objective in latent space (gradient, bo, cmaes, random) under an "
          "oracle budget"),
)}


def get_stage(name: str) -> Stage:
    """The stage called ``name``; an unknown name is an error listing the known ones."""
    if name not in STAGES:
        raise cfg.ConfigError(f"unknown stage '{name}' (stages: {', '.join(STAGES)})")
    return STAGES[name]


def run_stage(name: str, config: Any, track: bool = True, run_name: str | None = None) -> Any:
    """Run one stage inside its own MLflow run (nested under an active pipeline run)."""
    stage = get_stage(name)
    track = track and os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 records
    with tracking.stage_run(name, cfg.to_dict(config), enabled=track,
                            run_name=run_name) as tracker:
        return stage.callable()(config, tracker)
