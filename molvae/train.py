"""The train stage: fit a SELFIES VAE on a prepared folder, resumable, single GPU or DDP.

Loss per batch: ``recon + beta * KL (+ property_weight * property MSE)`` where ``recon`` is
token cross-entropy summed over each molecule and averaged over molecules (see
:func:`molvae.model.reconstruction_loss`), KL is summed over latent dimensions and averaged
over molecules, and ``beta`` follows a linear or cyclical warm-up to ``beta_max``. Free bits
floor each dimension's batch-mean KL so the optimizer gains nothing by collapsing it.

The same script runs under ``torchrun --nproc_per_node=K``: each rank takes every K-th
batch (so the global batch is ``K * batch_size``) and only rank 0 evaluates, writes and logs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from molvae.batching import PreparedData, collate, epoch_batches, load_prepared
from molvae.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from molvae.config import ConfigError, option, to_dict
from molvae.io import write_json, write_table
from molvae.model import (
    MODEL_FILE,
    PRESETS,
    SelfiesVAE,
    build_model,
    choose_device,
    model_from_state,
    model_state,
    save_model,
)
from molvae.tracking import Tracker
from molvae.validation import autocast, evaluate, objective

log = logging.getLogger(__name__)

KL_SCHEDULES = ("linear", "cyclical", "constant")
LR_SCHEDULES = ("cosine", "constant")
MIN_LR_FACTOR = 0.05  # cosine decays to this fraction of lr
# options that may change when a run is resumed
RESUME_KEYS = {"resume", "max_steps", "log_model", "registered_name", "num_workers", "threads"}


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
    patience: int = option(5, help="stop after this many epochs without a better val_loss "
                           "(0 = never)")
    checkpoint_every: int = option(1000, help="write checkpoint.pt every N steps (and each epoch)")
    log_every: int = option(50, help="log training metrics every N steps")
    eval_samples: int = option(1000, help="prior samples per epoch for validity/uniqueness")
    eval_molecules: int = option(1000, help="validation molecules reconstructed per epoch")
    amp: bool = option(True, help="bf16 autocast on CUDA")
    compile: bool = option(False, help="torch.compile the model")
    num_workers: int = option(0, help="DataLoader worker processes")
    device: str = option("auto", help="auto, cpu, cuda, cuda:N or mps")
    threads: int = option(0, help="CPU threads for torch (0 = torch's default); 1 is fastest "
                          "for the tiny preset")
    resume: bool = option(False, help="continue from OUT/checkpoint.pt")
    seed: int = option(0, help="random seed")
    log_model: bool = option(True, help="store the best model in MLflow as a pyfunc model")
    registered_name: str | None = option("molvae-vae", help="register the logged model under "
                                         "this name in the MLflow model registry ('' = don't)")

    def validate(self) -> None:
        choices = {"preset": PRESETS, "kl_schedule": KL_SCHEDULES, "lr_schedule": LR_SCHEDULES}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, "
                                  f"got '{getattr(self, key)}'")
        for key in ("epochs", "batch_size", "checkpoint_every", "log_every", "kl_cycle_steps"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "grad_clip", "beta_max", "free_bits", "patience",
                    "kl_warmup_steps", "lr_warmup_steps", "property_weight", "eval_samples",
                    "eval_molecules", "num_workers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.word_dropout < 1:
            raise ConfigError(f"word_dropout must be in [0, 1), got {self.word_dropout}")
        if self.kl_schedule == "cyclical" and self.kl_warmup_steps > self.kl_cycle_steps:
            raise ConfigError("kl_warmup_steps must not exceed kl_cycle_steps")
        if len(set(self.property_head)) != len(self.property_head):
            raise ConfigError(f"property_head lists a column twice: {self.property_head}")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint as plain data."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches finished within the current epoch
    step: int = 0  # optimizer steps in all
    epoch_loss_sum: float = 0.0
    best_val_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    progress: Progress
    seconds: float
    model_uri: str | None = None

    def summary(self) -> str:
        p = self.progress
        state = "finished" if p.finished else "stopped early by max_steps (--resume continues)"
        best = (f"best val_loss {p.best_val_loss:.3f} at epoch {p.best_epoch}"
                if p.best_epoch else "no epoch completed yet")
        return (f"training {state}: {p.epoch} epochs, {p.step} steps, {best}; "
                f"model in {self.out} ({self.seconds:.1f} s)")


@dataclass
class Distributed:
    """This process's place in a (possibly one-process) training job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, value: object) -> list:
        if self.world_size == 1:
            return [value]
        values: list = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def from_main(self, value: object) -> object:
        if self.world_size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def setup_distributed(device_name: str, threads: int = 0) -> Distributed:
    """Choose the device once; join the process group when started by torchrun."""
    if threads:
        torch.set_num_threads(threads)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = choose_device(device_name)
    if world_size == 1:
        return Distributed(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), world_size, device)


def kl_weight(step: int, config: TrainConfig) -> float:
    """beta at ``step``: linear warm-up, repeated warm-ups (cyclical), or constant."""
    if config.kl_schedule == "constant" or config.kl_warmup_steps == 0:
        return config.beta_max
    position = step % config.kl_cycle_steps if config.kl_schedule == "cyclical" else step
    return config.beta_max * min(1.0, position / config.kl_warmup_steps)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress))


def _new_model(config: TrainConfig, data: PreparedData) -> SelfiesVAE:
    model = build_model(data.vocab, config.preset, data.property_names,
                        embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
                        num_layers=config.num_layers, latent_dim=config.latent_dim,
                        encoder_hidden_dim=config.encoder_hidden_dim,
                        encoder_layers=config.encoder_layers,
                        word_dropout=config.word_dropout)
    model.property_mean.copy_(torch.from_numpy(data.property_mean))
    model.property_std.copy_(torch.from_numpy(data.property_std))
    return model


def train_model(config: TrainConfig, tracker: Tracker | None = None) -> TrainResult:
    """Train (or resume) a model into ``config.out``; see the module docstring."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    job = setup_distributed(config.device, config.threads)
    try:
        progress = _train(config, tracker, job)
    finally:
        if job.world_size > 1:
            dist.destroy_process_group()
    return TrainResult(Path(config.out), progress, time.perf_counter() - started)


def _train(config: TrainConfig, tracker: Tracker, job: Distributed) -> Progress:
    out, device = Path(config.out), job.device
    data = load_prepared(config.data, config.property_head, config.max_train, config.seed)
    checkpoint = load_checkpoint(out) if config.resume else None
    if checkpoint is None and (out / CHECKPOINT_FILE).is_file():
        log.warning("%s holds a checkpoint; starting afresh (use --resume to continue)", out)
    torch.manual_seed(config.seed)
    if checkpoint is None:
        model = _new_model(config, data)
    else:
        model = model_from_state(checkpoint["model"])
        if model.vocab.tokens != data.vocab.tokens:
            raise ValueError(f"{out}/{CHECKPOINT_FILE} was trained with another vocabulary "
                             f"than {config.data}/vocab.json")
        changed = sorted(k for k, v in to_dict(config).items()
                         if checkpoint["train_config"].get(k) != v and k not in RESUME_KEYS)
        if changed:
            log.warning("resuming with changed options %s: the run will differ from an "
                        "uninterrupted one", ", ".join(changed))
    model.to(device).train()
    torch.manual_seed(config.seed + job.rank)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    steps_per_epoch = len(epoch_batches(data.train.lengths, config.batch_size, config.seed, 0,
                                        job.rank, job.world_size))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.train)} training molecules are too few for "
                         f"{job.world_size} process(es)")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_factor, warmup=config.lr_warmup_steps, total=config.epochs * steps_per_epoch,
        schedule=config.lr_schedule))
    progress = Progress()
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        progress = Progress(**checkpoint["progress"])
        if len(checkpoint["rng"]) == job.world_size:
            restore_rng_state(checkpoint["rng"][job.rank])
        else:
            log.warning("checkpoint was written by %d processes, now %d: random streams differ",
                        len(checkpoint["rng"]), job.world_size)
        log.info("resuming at epoch %d, batch %d, step %d", progress.epoch + 1, progress.batch,
                 progress.step)
    step_model: torch.nn.Module = model
    if job.world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        step_model = torch.compile(step_model)

    def checkpoint_now() -> None:
        rng = job.gather(rng_state())
        if job.is_main:
            save_checkpoint({"model": model_state(model), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "progress": asdict(progress),
                             "rng": rng, "train_config": to_dict(config)}, out)

    while progress.epoch < config.epochs and not progress.finished:
        batches = epoch_batches(data.train.lengths, config.batch_size, config.seed,
                                progress.epoch, job.rank, job.world_size)
        loader = DataLoader(data.train, batch_sampler=batches[progress.batch:],
                            collate_fn=collate, num_workers=config.num_workers,
                            pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed))
        bar = tqdm(total=len(batches), initial=progress.batch, unit="batch",
                   desc=f"epoch {progress.epoch + 1}/{config.epochs}",
                   **({} if job.is_main else {"disable": True}))  # else TQDM_DISABLE decides
        loss_sum = torch.tensor(progress.epoch_loss_sum, device=device)
        window_start, window_molecules = time.perf_counter(), 0
        for batch in loader:
            beta = kl_weight(progress.step, config)
            batch = batch.to(device)
            with autocast(device, config.amp):
                terms = objective(step_model(batch.tokens, batch.lengths), batch,
                                  model.vocab.pad_id, beta, config.free_bits,
                                  config.property_weight)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            loss_sum += terms["loss"].detach()
            progress.step += 1
            progress.batch += 1
            window_molecules += len(batch) * job.world_size
            bar.update()
            if progress.step % config.log_every == 0:
                rate = window_molecules / (time.perf_counter() - window_start)
                metrics = {k: float(v.detach()) for k, v in terms.items()}
                metrics.update(beta=beta, lr=scheduler.get_last_lr()[0], mol_per_s=rate)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", mol_s=f"{rate:.0f}")
                if job.is_main:
                    tracker.log_metrics(metrics, step=progress.step)
                window_start, window_molecules = time.perf_counter(), 0
            stop = config.max_steps is not None and progress.step >= config.max_steps
            if stop or progress.step % config.checkpoint_every == 0:
                progress.epoch_loss_sum = float(loss_sum)
                checkpoint_now()
            if stop:
                bar.close()
                return progress
        bar.close()
        train_loss = float(loss_sum) / max(progress.batch, 1)
        progress.epoch, progress.batch, progress.epoch_loss_sum = progress.epoch + 1, 0, 0.0
        metrics = evaluate(model, data, config, device) if job.is_main else None
        metrics = job.from_main(metrics)
        _end_epoch(progress, metrics, train_loss, config, model, tracker, job.is_main)
        checkpoint_now()
    if not progress.finished:
        progress.finished = True
        checkpoint_now()
    return progress


def _end_epoch(progress: Progress, metrics: dict, train_loss: float, config: TrainConfig,
               model: SelfiesVAE, tracker: Tracker, is_main: bool) -> None:
    """Record one epoch's metrics; keep the best model; decide on early stopping."""
    kl_dims = metrics.pop("kl_per_dimension")
    row = {"epoch": progress.epoch, "step": progress.step, "train_loss": train_loss, **metrics}
    progress.history.append(row)
    improved = metrics["val_loss"] < progress.best_val_loss
    if improved:
        progress.best_val_loss, progress.best_epoch, progress.bad_epochs = \
            metrics["val_loss"], progress.epoch, 0
    else:
        progress.bad_epochs += 1
    if config.patience and progress.bad_epochs >= config.patience:
        log.info("early stop: val_loss did not improve for %d epochs", progress.bad_epochs)
        progress.finished = True
    if not is_main:
        return
    log.info("epoch %d: %s", progress.epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=progress.epoch)
    if improved:
        save_model(model, config.out)
        write_json({"epoch": progress.epoch, "kl_per_dimension": kl_dims,
                    "active_units": metrics["active_units"]}, Path(config.out) / "latent.json")
    write_table(pd.DataFrame(progress.history), Path(config.out) / "history.csv")


def run_train(config: TrainConfig, tracker: Tracker) -> TrainResult:
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
        from molvae.serving import log_model

        result.model_uri = log_model(tracker, out, config.registered_name or None)
    return result
