"""The stage registry: each stage declares its config, what it reads and writes, and whether a
killed run resumes; the CLI and pipelines derive everything else from these declarations.

Entries name modules as strings so that ``molvae --help`` does not import torch, RDKit or
MLflow. Every stage module has ``run(config, tracker=None) -> result``: :func:`run_stage` hands
it the stage's MLflow run as the tracker; called without one (a test, a benchmark, a notebook),
a stage records nothing, the same way for every stage.
"""

from __future__ import annotations

import importlib
import os
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

from molvae import config as cfg
from molvae import tracking
from molvae.io import output_lock


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: ``molvae.stages.<name>.run(config, tracker=None) -> result``.

    Attributes:
        name: the sub-command and pipeline key.
        config_class: the config dataclass, ``module:Class`` (or a name in the stage module).
        help: one line for ``--help``.
        reads: config key -> the earlier stage whose output fills it in a pipeline.
        output_file: the stage's ``out`` is this file inside its folder ('' = the folder).
        resumable: a killed run continues in its folder (``resume``) instead of restarting.
        limits: options that bound how long a run goes on, not what it makes: they stay out of
            the pipeline's cache key, so raising one continues the stopped run in its folder.
    """

    name: str
    config_class: str
    help: str
    reads: dict[str, str] = field(default_factory=dict)
    output_file: str = ""
    resumable: bool = False
    limits: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return f"molvae.stages.{self.name}"

    def config_type(self) -> type[Any]:
        module, _, name = self.config_class.rpartition(":")
        return getattr(importlib.import_module(module or self.module), name)

    def callable(self) -> Any:
        return importlib.import_module(self.module).run


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("prep", "PrepConfig",
          "standardize molecules, compute properties, SELFIES, vocabulary and splits"),
    Stage("train", "molvae.training.config:TrainConfig",
          "train the SELFIES VAE, Gaussian or VQ (--latent vq: discrete codes, then a code "
          "prior); KL annealing, checkpoints, --resume, torchrun DDP",
          reads={"data": "prep"}, resumable=True,
          limits=("max_steps", "max_minutes", "threads")),
    Stage("sample", "SampleConfig", "generate molecules from the prior of a trained model (a "
          "VQ model: codes drawn from its code prior)",
          reads={"model": "train"}, output_file="samples.csv"),
    Stage("score", "ScoreConfig",
          "MOSES-style quality report of generated molecules (validity, FCD, SNN, ...)",
          reads={"generated": "sample", "reference": "prep"}),
    Stage("regress", "RegressConfig",
          "predict properties from the latent space: regressors, CV scores, surrogates "
          "(Gaussian models only)",
          reads={"model": "train", "data": "prep"}),
    Stage("optimize", "OptimizeConfig",
          "optimize an objective under an oracle budget: the decoder fine-tuned as a policy "
          "(default), or latent search (cmaes, bo, gradient, random); Gaussian models only: "
          "a VQ model's discrete codes have no space to search",
          reads={"model": "train", "data": "prep", "regress": "regress"}),
    Stage("encode", "EncodeConfig", "molecules → latent mu, sigma and ELBO terms (a table); a "
          "VQ model: each molecule's codes and their NLL under its code prior",
          reads={"model": "train"}, output_file="latents.parquet"),
    Stage("decode", "DecodeConfig", "latent vectors (z_* or mu_* columns) → molecules; a VQ "
          "model: code_* columns, as molvae encode writes them",
          reads={"model": "train", "latents": "encode"}, output_file="decoded.csv"),
    Stage("interpolate", "InterpolateConfig",
          "molecules along a linear and a spherical latent path between two molecules "
          "(Gaussian models only)",
          reads={"model": "train"}),
    Stage("predict", "PredictConfig",
          "properties of new molecules from saved regressors or the model's property head "
          "(Gaussian models only)",
          reads={"model": "train", "regress": "regress"}, output_file="predictions.csv"),
    Stage("anomaly", "AnomalyConfig",
          "out-of-distribution score per molecule (NLL per token, negative ELBO; a VQ model's "
          "negative ELBO: the decoder's NLL plus its codes' NLL under the code prior)",
          reads={"model": "train", "reference": "prep"}, output_file="anomaly.csv"),
    Stage("analogs", "AnalogsConfig",
          "analogs of given molecules for data augmentation: decoded around each one's "
          "posterior, kept inside a similarity band (Gaussian models only)",
          reads={"model": "train"}),
)}


def get_stage(name: str) -> Stage:
    """The stage called ``name``; an unknown name is an error listing the known ones."""
    if name not in STAGES:
        raise cfg.ConfigError(f"unknown stage '{name}' (stages: {', '.join(STAGES)})")
    return STAGES[name]


def run_stage(name: str, config: Any, track: bool = True, run_name: str | None = None,
              runs: dict[str, str] | None = None) -> Any:
    """Run one stage inside its own MLflow run (nested under an active pipeline run).

    The run lists the tables the stage reads as MLflow datasets. ``runs`` maps the stages
    whose outputs this one reads to their run ids (a pipeline knows them): each becomes a
    ``molvae.upstream.KEY`` tag, so a reader can follow an input to the run that made it; this
    stage's own run id is added to ``runs``.

    The stage's ``out`` is locked while it runs (:func:`molvae.io.output_lock`): a second stage
    writing the same output fails at once naming the first's pid, instead of the two mixing
    their files (two preps into one folder once reported one input and held the other).

    Raises:
        molvae.io.Busy: another process is writing ``config.out``.
    """
    stage = get_stage(name)
    writer = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 records and locks
    track = track and writer
    runs = {} if runs is None else runs
    options = cfg.to_dict(config)
    out = getattr(config, "out", None)
    lock = output_lock(out) if writer and out is not None else nullcontext()
    with lock, tracking.stage_run(name, options, enabled=track, run_name=run_name) as tracker:
        tracker.set_tags({f"molvae.upstream.{key}": runs[source]
                          for key, source in stage.reads.items() if source in runs})
        for key, value in options.items():
            for item in value if isinstance(value, list) else [value]:
                if key not in ("out", "cache_dir") and isinstance(item, str):  # what it writes
                    tracker.log_input_table(item, context=key)
        result = stage.callable()(config, tracker)
        if tracker.run_id:
            runs[name] = tracker.run_id
        return result
