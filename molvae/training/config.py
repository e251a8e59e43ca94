"""Options of ``molvae train``: the config the training loop reads.

It lives with the loop rather than with the stage because the loop reads nearly every key;
:mod:`molvae.stages.train` declares it as the stage's config.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from molvae.config import ConfigError, Renamed, coerce, device_option, option, to_dict
from molvae.model.presets import PRESETS
from molvae.model.prior import parse_prior_fit
from molvae.model.vq import LATENTS
from molvae.training.schedules import KL_SCHEDULES, LR_SCHEDULES

log = logging.getLogger(__name__)

# options that may change when a run is resumed; ``epochs`` may grow to extend a finished run
RESUME_KEYS = {"resume", "max_steps", "max_minutes", "prior", "log_model",
               "registered_name", "threads",
               "epochs", "allow_degenerate", "code_prior_epochs"}
# options that cannot change on resume: the checkpoint's weights have this architecture, so a
# new value would be silently ignored while the checkpoint recorded it
FIXED_ON_RESUME = ("preset", "embed_dim", "hidden_dim", "num_layers", "encoder_hidden_dim",
                   "encoder_layers", "latent_dim", "word_dropout", "property_head", "condition",
                   "latent", "codes", "codebook_size", "code_prior_dim")


def _prior_from_components(value: Any) -> str:
    """The ``prior`` spec of the old ``prior_components: K``: K Gaussians, one for K = 1."""
    components = coerce(value, int, "prior_components")
    if components < 1:
        raise ConfigError(f"prior_components must be >= 1, got {components}")
    return "gaussian" if components == 1 else f"mixture:{components}"


@dataclass
class TrainConfig:
    """Options of ``molvae train``."""

    RENAMED: ClassVar[dict[str, str | Renamed]] = {
        "prior_components": Renamed("prior", _prior_from_components)}

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
    latent: str = option("gaussian", help="gaussian: each molecule is a point in a continuous "
                         "space (every verb works, optimization included); vq: each molecule "
                         "is a short sequence of --codes codes, each one of --codebook-size "
                         "learned kinds (a compact, discrete description; a code prior is "
                         "trained after the VAE to sample from; optimize, interpolate, analogs "
                         "and regress need a Gaussian model)")
    codes: int = option(8, help="vq: codes per molecule (they split latent_dim between them)")
    codebook_size: int = option(256, help="vq: kinds of code (a molecule's code holds "
                                "codes x log2(codebook_size) bits)")
    commitment: float = option(0.25, help="vq: weight of the term keeping the encoder near its "
                               "codes")
    code_prior_epochs: int = option(10, help="vq: passes of the code prior over the training "
                                    "molecules' codes (after the VAE; --resume continues)")
    code_prior_dim: int = option(128, help="vq: size of the code prior's GRU")
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
    beta_max: float = option(0.2, help="final KL weight on the per-molecule summed loss (higher: "
                             "better samples from a Gaussian prior, worse reconstruction; see "
                             "docs/cpu_model.md)")
    kl_warmup_steps: int = option(5000, help="steps for beta to rise from 0 to beta_max")
    kl_cycle_steps: int = option(20000, help="cycle length of the cyclical schedule")
    free_bits: float = option(0.0, help="KL floor per latent dimension in nats (0 = off)")
    word_dropout: float = option(0.0, help="probability of hiding a decoder input token")
    randomize_smiles: bool = option(False, help="write each training molecule from a different "
                                    "random SMILES every epoch (augmentation against SELFIES' "
                                    "aromatic deficit; RDKit re-spells the split at each "
                                    "epoch's start)")
    property_head: list[str] = option([], help="property columns to predict from z (joint)")
    property_weight: float = option(1.0, help="weight of the property loss")
    condition: list[str] = option([], help="property columns the encoder and decoder are "
                                  "conditioned on (a CVAE; `molvae sample --condition "
                                  "NAME=VALUE` then generates for targets)")
    prior: str = option("gaussian", help="the fitted prior, refitted to the validation "
                        "molecules' codes after each epoch: gaussian (one Gaussian), mixture:K (K "
                        "Gaussians, at most half the molecules; they cover a clustered latent "
                        "space better), posteriors:N[:SPREAD] (an equal mixture of N molecules' "
                        "own posteriors, their sigma times SPREAD, default 1) or learned:K (K "
                        "diagonal Gaussians trained with the model, in its KL term; see "
                        "docs/cpu_model.md for what it buys)")
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
    init_from: str | None = option(None, help="start from the weights of this trained model (a "
                                   "model folder, a shipped name such as moses, or an MLflow "
                                   "model URI) with a new optimizer and learning-rate schedule: "
                                   "fine-tuning, or a second schedule after a finished run; the "
                                   "architecture is the model's, and its vocabulary must hold "
                                   "every token of the data")
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
        choices = {"preset": PRESETS, "kl_schedule": KL_SCHEDULES, "lr_schedule": LR_SCHEDULES,
                   "latent": LATENTS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, "
                                  f"got '{getattr(self, key)}'")
        for key in ("epochs", "batch_size", "checkpoint_every", "log_every", "kl_cycle_steps",
                    "codes", "code_prior_epochs", "code_prior_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "grad_clip", "beta_max", "free_bits", "patience",
                    "kl_warmup_steps", "lr_warmup_steps", "property_weight", "eval_samples",
                    "eval_molecules", "commitment"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        try:
            parse_prior_fit(self.prior)
        except ValueError as err:
            raise ConfigError(f"prior: {err}") from None
        if self.prior.startswith("learned") and (self.free_bits > 0 or self.latent == "vq"):
            raise ConfigError(f"prior {self.prior} needs free_bits 0 and a gaussian latent: its "
                              "KL does not split by dimension, and a vq model has no KL")
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
        if self.latent == "vq":
            self._validate_vq()

    def _validate_vq(self) -> None:
        if self.property_head or self.condition:
            raise ConfigError("a vq model has no property head and no conditions: train a "
                              "gaussian one for property_head or condition")
        if self.codebook_size < 2:
            raise ConfigError(f"codebook_size must be >= 2, got {self.codebook_size}")
        latent_dim = self.latent_dim or PRESETS[self.preset]["latent_dim"]
        if latent_dim % self.codes:
            raise ConfigError(f"codes ({self.codes}) must divide latent_dim ({latent_dim}): "
                              "each code is a vector of latent_dim / codes numbers")

    def latent_options(self) -> dict:
        """What a new model needs of ``latent`` and its options (nothing for a Gaussian one)."""
        return {"latent": "vq", "codes": self.codes, "codebook_size": self.codebook_size,
                "code_prior_dim": self.code_prior_dim} if self.latent == "vq" else {}

    def check_resume(self, saved: dict) -> None:
        """Refuse options the checkpoint's weights fix (a new value would be ignored while the
        checkpoint recorded it); warn about others that make the run differ from an
        uninterrupted one. ``saved``: the checkpoint's config."""
        current = to_dict(self)
        fixed = [k for k in FIXED_ON_RESUME if k in saved and saved[k] != current[k]]
        if fixed:
            raise ConfigError(f"cannot resume {self.out} with changed "
                              f"{', '.join(f'{k} ({saved[k]!r} -> {current[k]!r})' for k in fixed)}"
                              ": they fix the model's architecture; train into another --out "
                              "instead")
        if saved.get("prior") != self.prior and \
                any(spec.startswith("learned") for spec in (saved.get("prior", ""), self.prior)):
            raise ConfigError(f"cannot resume {self.out} with changed prior "
                              f"({saved.get('prior')!r} -> {self.prior!r}): a learned prior "
                              "trains with the model; train into another --out instead")
        # an option the checkpoint does not name did not exist when it was written: it ran
        # as that option's default does
        defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING
                    else f.default_factory() for f in dataclasses.fields(self)}
        changed = sorted(k for k, v in current.items() if k not in RESUME_KEYS
                         and saved.get(k, defaults.get(k)) != v)
        if changed:
            log.warning("resuming with changed options %s: the run will differ from an "
                        "uninterrupted one", ", ".join(changed))
