"""Options of ``molvae train``: the config the training loop reads.

It lives with the loop rather than with the stage because the loop reads nearly every key;
:mod:`molvae.stages.train` declares it as the stage's config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from molvae.config import ConfigError, device_option, option
from molvae.model.presets import PRESETS
from molvae.training.schedules import KL_SCHEDULES, LR_SCHEDULES

# options that may change when a run is resumed; ``epochs`` may grow to extend a finished run
RESUME_KEYS = {"resume", "max_steps", "max_minutes", "prior_components", "log_model",
               "registered_name", "threads",
               "epochs", "allow_degenerate"}
# options that cannot change on resume: the checkpoint's weights have this architecture, so a
# new value would be silently ignored while the checkpoint recorded it
FIXED_ON_RESUME = ("preset", "embed_dim", "hidden_dim", "num_layers", "encoder_hidden_dim",
                   "encoder_layers", "latent_dim", "word_dropout", "property_head", "condition")


@dataclass
class TrainConfig:
    """Options of ``molvae train``."""

    data: Path = option(help="prepared data folder (the output of `molvae prep`)")
    out: Path = option(Path("model"), help="model folder: model.pt (best), checkpoint.pt, "
                       "history.csv")
    preset: str = option("default", help="model size: tiny, small or default")
    embed_dim: int | None = option(None, help="token embedding size (overrides the preset)")
    hidden_dim: int | None = option(None, help="decoder GRU size (overrides the preset)")
    num_layers: int | None = option(None, help="decoder GRU layers (overrides the preset)")
    encoder_hidden_dim: int | None = option(None, help="encoder GRU size per direction "
                                            "(overrides the preset; default hidden_dim)")
    encoder_layers: int | None = option(None, help="encoder GRU layers (overrides the preset; "
                                        "default num_layers)")
    latent_dim: int | None = option(None, help="latent size (overrides the preset)")
    epochs: int = option(30, help="passes over the training set")
    batch_size: int = option(512, help="molecules per batch (per process under torchrun)")
    max_steps: int | None = option(None, help="stop after this many steps in all (a checkpoint "
                                   "is written; --resume continues)")
    max_minutes: float | None = option(None, help="stop after this many minutes of training in "
                                       "this invocation (a checkpoint is written; --resume "
                                       "continues); SIGTERM stops the same way")
    max_train: int | None = option(None, help="train on a random subset of this many molecules")
    lr: float = option(1e-3, help="peak learning rate (AdamW)")
    lr_schedule: str = option("cosine", help="cosine (decay after warm-up) or constant")
    lr_warmup_steps: int = option(500, help="steps of linear learning-rate warm-up")
    weight_decay: float = option(1e-4, help="AdamW weight decay")
    grad_clip: float = option(1.0, help="clip the gradient norm to this (0 = off)")
    kl_schedule: str = option("linear", help="beta schedule: linear, cyclical or constant")
    beta_max: float = option(1.0, help="final KL weight")
    kl_warmup_steps: int = option(5000, help="steps for beta to rise from 0 to beta_max")
    kl_cycle_steps: int = option(20000, help="cycle length of the cyclical schedule")
    free_bits: float = option(0.0, help="KL floor per latent dimension in nats (0 = off)")
    word_dropout: float = option(0.0, help="probability of hiding a decoder input token")
    property_head: list[str] = option([], help="property columns to predict from z (joint)")
    property_weight: float = option(1.0, help="weight of the property loss")
    condition: list[str] = option([], help="property columns the encoder and decoder are "
                                  "conditioned on (a CVAE; `molvae sample --condition "
                                  "NAME=VALUE` then generates for targets)")
    prior_components: int = option(1, help="Gaussian components of the fitted prior, refitted "
                                   "to the validation molecules' codes after each epoch (1 = "
                                   "one Gaussian; more cover a clustered latent space better)")
    patience: int = option(5, help="stop after this many epochs without a better val_loss "
                           "(0 = never)")
    checkpoint_every: int = option(1000, help="write checkpoint.pt every N steps (and each epoch)")
    log_every: int = option(50, help="log training metrics every N steps")
    eval_samples: int = option(1000, help="prior samples per epoch for validity/uniqueness")
    eval_molecules: int = option(1000, help="validation molecules reconstructed per epoch")
    amp: bool = option(True, help="bf16 autocast on CUDA")
    compile: bool = option(False, help="torch.compile the model")
    device: str = device_option()
    threads: int = option(0, help="CPU threads for torch (0 = auto: the cores the 1-minute "
                          "load average leaves idle, at least 1); 1 is fastest for tiny")
    resume: bool = option(False, help="continue from OUT/checkpoint.pt; with more --epochs "
                          "than before, a finished run is extended")
    seed: int = option(0, help="random seed")
    log_model: bool = option(True, help="store the best model in MLflow as a pyfunc model")
    registered_name: str | None = option(None, help="register the logged model under this name "
                                         "in the MLflow model registry ('' = never; default: "
                                         "molvae-vae, except for the tiny preset or --max-steps)")
    allow_degenerate: bool = option(False, help="succeed even when the latent space collapsed "
                                    "(0 active units; by default the stage fails with advice)")

    def validate(self) -> None:
        choices = {"preset": PRESETS, "kl_schedule": KL_SCHEDULES, "lr_schedule": LR_SCHEDULES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, "
                                  f"got '{getattr(self, key)}'")
        for key in ("epochs", "batch_size", "checkpoint_every", "log_every", "kl_cycle_steps",
                    "prior_components"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "grad_clip", "beta_max", "free_bits", "patience",
                    "kl_warmup_steps", "lr_warmup_steps", "property_weight", "eval_samples",
                    "eval_molecules"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.word_dropout < 1:
            raise ConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if self.kl_schedule == "cyclical" and self.kl_warmup_steps > self.kl_cycle_steps:
            raise ConfigError("kl_warmup_steps must not exceed kl_cycle_steps")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if len(set(self.property_head)) != len(self.property_head):
            raise ConfigError(f"property_head lists a column twice: {self.property_head}")
        if len(set(self.condition)) != len(self.condition):
            raise ConfigError(f"condition lists a column twice: {self.condition}")
