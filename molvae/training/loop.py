"""The training loop: fit a SELFIES VAE on a prepared folder, resumable, single GPU or DDP.

Loss per batch: ``recon + beta * KL (+ property_weight * property MSE)`` where ``recon`` is
token cross-entropy summed over each molecule and averaged over molecules (see
:func:`molvae.model.loss.reconstruction_loss`), KL is summed over latent dimensions and averaged
over molecules (against N(0, I), or a mixture trained with the model: ``prior: learned:K``),
and ``beta`` follows a linear or cyclical warm-up to ``beta_max``. Free bits floor each
dimension's batch-mean KL so the optimizer gains nothing by collapsing it.

The same script runs under ``torchrun --nproc_per_node=K``: each rank takes every K-th
batch (so the global batch is ``K * batch_size``) and only rank 0 validates, writes and logs.

Resuming (``--resume``) continues from OUT/checkpoint.pt. Raising ``epochs`` extends a run that
had finished. The learning-rate schedule is then recomputed for the new total number of steps
and continues from the current step, exactly as if the run had been started with the new
``epochs``: the cosine picks up at its value for this step of the longer schedule (higher than
where the shorter one ended) and decays to its floor at the new end; there is no new warm-up.
An early-stopped run extended this way trains one more epoch and stops again unless val_loss
improves. Options that fix the architecture (``FIXED_ON_RESUME``) cannot change on resume.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

import pandas as pd
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from molvae.config import to_dict
from molvae.data.batching import Batch, DeviceTokens, PreparedData, epoch_batches, load_prepared
from molvae.data.respell import epoch_spellings
from molvae.devices import autocast
from molvae.io import write_json, write_table
from molvae.model.loss import vae_loss
from molvae.model.mixture_prior import MixturePrior
from molvae.model.store import model_state, save_model
from molvae.model.vae import SelfiesVAE
from molvae.tracking import Tracker
from molvae.training.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from molvae.training.code_prior import train_code_prior
from molvae.training.config import TrainConfig
from molvae.training.distributed import Distributed, setup_distributed
from molvae.training.schedules import kl_weight, lr_factor
from molvae.training.start_model import initial_model, initial_prior
from molvae.training.stopping import StopRequest
from molvae.training.validation import measure_validation, validation_metrics

log = logging.getLogger(__name__)


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
    code_prior: dict | None = None  # a VQ model's code prior step, in this invocation


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    progress: Progress
    seconds: float
    model_uri: str | None = None

    @property
    def finished(self) -> bool:
        """False when max_steps, max_minutes or SIGTERM stopped the run (it can resume)."""
        prior = self.progress.code_prior
        return self.progress.finished and (prior is None or prior["finished"])

    def summary(self) -> str:
        p, prior = self.progress, self.progress.code_prior
        state = "finished" if self.finished else \
            "stopped early by max_steps, max_minutes or SIGTERM (--resume continues)"
        best = (f"best val_loss {p.best_val_loss:.3f} at epoch {p.best_epoch}"
                if p.best_epoch else "no epoch completed yet")
        codes = "" if prior is None else \
            f", code prior {prior['epoch']} epochs ({prior['val_code_nll_bits']:.1f} bits/mol)"
        return (f"training {state}: {p.epoch} epochs, {p.step} steps, {best}{codes}; "
                f"model in {self.out} ({self.seconds:.1f} s)")

    def headline(self) -> dict[str, float]:
        """The numbers models are compared by, taken at the best epoch (the model kept); a VQ
        model's prior_validity is its code prior's."""
        p = self.progress
        best = next((row for row in p.history if row["epoch"] == p.best_epoch), {})
        best = {**best, **{k: v for k, v in (p.code_prior or {}).items() if k == "prior_validity"}}
        return {"best_val_loss": p.best_val_loss, "epochs": float(p.epoch),
                **{k: float(best[k]) for k in ("molecule_accuracy", "prior_validity",
                                               "active_units") if k in best}}


def train_model(config: TrainConfig, tracker: Tracker | None = None) -> TrainResult:
    """Train (or resume) a model into ``config.out``; see the module docstring."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    job = setup_distributed(config.device, config.threads)
    stop = StopRequest(config.max_steps, config.max_minutes, config.log_every)
    try:
        with stop.on_sigterm():
            progress = _train(config, tracker, job, stop)
    finally:
        if job.world_size > 1:
            dist.destroy_process_group()
    return TrainResult(Path(config.out), progress, time.perf_counter() - started)


@dataclass
class _Run:
    """What one invocation trains with, built by :func:`_start` and handed to each step."""

    config: TrainConfig
    job: Distributed
    tracker: Tracker
    data: PreparedData
    train_tokens: DeviceTokens
    model: SelfiesVAE
    step_model: torch.nn.Module  # what the steps call: the model, DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    progress: Progress
    prior: MixturePrior | None  # trained in the KL term (prior: learned:K), else None


def _train(config: TrainConfig, tracker: Tracker, job: Distributed,
           should_stop: StopRequest) -> Progress:
    """Epochs until ``config.epochs`` or early stopping, each validated and checkpointed;
    returns where training stands, also when a stop request cut it short."""
    run = _start(config, tracker, job)
    progress = run.progress
    should_stop.start_clock()
    while progress.epoch < config.epochs and not progress.finished:
        train_loss = _train_epoch(run, should_stop)
        if train_loss is None:
            return progress
        _end_epoch(run, train_loss)
    if not progress.finished:
        progress.finished = True
        _save_checkpoint(run)
    if config.latent == "vq" and job.is_main:
        progress.code_prior = train_code_prior(config, run.data, job.device, should_stop,
                                               tracker, progress.step)
    return progress


def _start(config: TrainConfig, tracker: Tracker, job: Distributed) -> _Run:
    """Set up one invocation: the data, the model (new, the checkpoint's with --resume, or a
    trained model's with --init-from), the optimizer and learning-rate schedule, and where
    training stands."""
    out = Path(config.out)
    data = load_prepared(config.data, config.property_head, config.max_train, config.seed,
                         config.condition, train_smiles=config.randomize_smiles)
    checkpoint = load_checkpoint(out) if config.resume else None
    if checkpoint is None and (out / CHECKPOINT_FILE).is_file():
        log.warning("%s holds a checkpoint; starting afresh (use --resume to continue)", out)
    model, data = initial_model(config, data, checkpoint)
    model = model.to(job.device).train()
    train_tokens = DeviceTokens(data.train, job.device)
    prior = initial_prior(config, model, train_tokens, checkpoint)
    torch.manual_seed(config.seed + job.rank)
    groups = [{"params": list(model.parameters())}] + \
        ([{"params": list(prior.parameters()), "weight_decay": 0.0}] if prior else [])
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _lr_schedule(config, data, job, optimizer)
    progress = Progress() if checkpoint is None else \
        _resume(config, checkpoint, job, optimizer, scheduler)
    step_model: torch.nn.Module = model
    if job.world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[job.device.index] if job.device.type == "cuda" else None)
    if config.compile:
        step_model = cast(torch.nn.Module, torch.compile(step_model))  # a wrapped Module
    return _Run(config, job, tracker, data, train_tokens, model, step_model, optimizer,
                scheduler, progress, prior)


def _lr_schedule(config: TrainConfig, data: PreparedData, job: Distributed,
                 optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up and decay over this config's epochs; this rank's batches per epoch set the
    number of steps (the same on every rank)."""
    steps_per_epoch = len(epoch_batches(data.train.lengths, config.batch_size, config.seed, 0,
                                        job.rank, job.world_size))
    if steps_per_epoch == 0:
        raise ValueError(f"{len(data.train)} training molecules are too few for "
                         f"{job.world_size} process(es)")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
        lr_factor, warmup=config.lr_warmup_steps, total=config.epochs * steps_per_epoch,
        schedule=config.lr_schedule))


def _resume(config: TrainConfig, checkpoint: dict, job: Distributed,
            optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR) -> Progress:
    """Put the optimizer, the schedule's step and this rank's random generators back where
    the checkpoint left them; returns its progress (a finished run given more epochs goes
    on)."""
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])  # the step count; the schedule
    # itself is this config's (see the module docstring), so the next step's LR comes from it
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs,
                                   scheduler.lr_lambdas, strict=True):
        group["lr"] = base * factor(scheduler.last_epoch)
    progress = Progress(**checkpoint["progress"])
    if progress.finished and config.epochs > checkpoint["train_config"]["epochs"]:
        log.info("extending the finished run from %d to %d epochs",
                 checkpoint["train_config"]["epochs"], config.epochs)
        progress.finished = False
    if len(checkpoint["rng"]) == job.world_size:
        restore_rng_state(checkpoint["rng"][job.rank])
    else:
        log.warning("checkpoint was written by %d processes, now %d: random streams differ",
                    len(checkpoint["rng"]), job.world_size)
    log.info("resuming at epoch %d, batch %d, step %d", progress.epoch + 1, progress.batch,
             progress.step)
    return progress


def _save_checkpoint(run: _Run) -> None:
    """Write OUT/checkpoint.pt (rank 0) with every rank's random generators."""
    rng = run.job.gather(rng_state())
    if run.job.is_main:
        save_checkpoint({"model": model_state(run.model),
                         "optimizer": run.optimizer.state_dict(),
                         "scheduler": run.scheduler.state_dict(),
                         "progress": asdict(run.progress), "rng": rng,
                         "train_config": to_dict(run.config),
                         **({"prior": run.prior.state_dict()} if run.prior else {})},
                        run.config.out)


def _train_epoch(run: _Run, should_stop: StopRequest) -> float | None:
    """Train the rest of the current epoch, checkpointing every ``checkpoint_every`` steps;
    returns its mean training loss, or None when a stop request ended it (checkpointed)."""
    config, job, progress = run.config, run.job, run.progress
    if config.randomize_smiles:  # this epoch's spellings of the training split
        run.train_tokens = DeviceTokens(epoch_spellings(Path(config.out), run.data, config.seed,
                                                        progress.epoch), job.device)
    batches = epoch_batches(run.train_tokens.host_lengths.numpy(), config.batch_size,
                            config.seed, progress.epoch, job.rank, job.world_size)
    loss_sum = torch.tensor(progress.epoch_loss_sum, device=job.device)
    window_start, window_molecules = time.perf_counter(), 0
    with tqdm(total=len(batches), initial=progress.batch, unit="batch",
              desc=f"epoch {progress.epoch + 1}/{config.epochs}",
              **({} if job.is_main else {"disable": True})) as bar:  # else TQDM_DISABLE decides
        for rows in batches[progress.batch:]:
            beta = kl_weight(progress.step, config.kl_schedule, config.beta_max,
                             config.kl_warmup_steps, config.kl_cycle_steps)
            batch = run.train_tokens.batch(rows)
            terms = _train_step(run, batch, beta)
            loss_sum += terms["loss"].detach()
            progress.step += 1
            progress.batch += 1
            window_molecules += len(batch) * job.world_size
            bar.update()
            if progress.step % config.log_every == 0:
                rate = window_molecules / (time.perf_counter() - window_start)
                _log_step(run, terms, beta, rate, bar)
                window_start, window_molecules = time.perf_counter(), 0
            stop = should_stop(progress.step, job)
            if stop or progress.step % config.checkpoint_every == 0:
                progress.epoch_loss_sum = float(loss_sum)
                _save_checkpoint(run)
            if stop:
                return None
    return float(loss_sum) / max(progress.batch, 1)


def _train_step(run: _Run, batch: Batch, beta: float) -> dict[str, torch.Tensor]:
    """One optimizer step on ``batch`` with KL weight ``beta``; returns the loss terms."""
    config = run.config
    with autocast(run.job.device, config.amp):
        terms = vae_loss(run.step_model(batch.tokens, batch.lengths, batch.conditions), batch,
                         run.model.vocab.pad_id, beta, config.free_bits, config.property_weight,
                         config.commitment, run.prior)
    run.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if run.prior is not None and run.job.world_size > 1:  # outside DDP: average by hand
        for parameter in run.prior.parameters():
            assert parameter.grad is not None  # the KL term reaches every parameter
            dist.all_reduce(parameter.grad)
            parameter.grad.div_(run.job.world_size)
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for group in run.optimizer.param_groups
                                        for p in group["params"]], config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return terms


def _log_step(run: _Run, terms: dict[str, torch.Tensor], beta: float, rate: float,
              bar: tqdm) -> None:
    """Show the step's loss and throughput (molecules per second, all ranks) on the progress
    bar; rank 0 also sends them, with beta and the learning rate, to the tracker."""
    metrics = {k: float(v.detach()) for k, v in terms.items()}
    metrics.update(beta=beta, lr=float(run.scheduler.get_last_lr()[0]), mol_per_s=rate)
    bar.set_postfix(loss=f"{metrics['loss']:.3f}", mol_s=f"{rate:.0f}")
    if run.job.is_main:
        run.tracker.log_metrics(metrics, step=run.progress.step)


def _end_epoch(run: _Run, train_loss: float) -> None:
    """Close the epoch: validate (rank 0, the others receive its metrics), record the epoch,
    keep the model if it is the best so far, and write a checkpoint."""
    progress = run.progress
    progress.epoch, progress.batch, progress.epoch_loss_sum = progress.epoch + 1, 0, 0.0
    metrics = run.job.from_main(_validate(run) if run.job.is_main else None)
    kl_dims = metrics.pop("kl_per_dimension")
    row = _record_epoch(progress, metrics, train_loss, run.config.patience)
    if run.job.is_main:
        _write_epoch(run, row, kl_dims)
    _save_checkpoint(run)


def _validate(run: _Run) -> dict:
    """The epoch's validation metrics. Between measuring the validation split and sampling
    the prior, the prior is refitted to the split's codes: the model is saved with it, and
    prior_validity measures it."""
    config, model = run.config, run.model
    model.eval()
    measured = measure_validation(
        model, run.data, run.job.device, beta=config.beta_max,
        property_weight=config.property_weight, batch_size=config.batch_size,
        reconstruct=config.eval_molecules, seed=config.seed, amp=config.amp,
        commitment=config.commitment, prior=run.prior)
    if run.prior is not None:  # the trained mixture is what the model samples from
        model.set_mixture(*run.prior.components())
    if config.latent == "gaussian":  # a VQ model's code prior trains after the VAE
        model.refit_prior(measured.mu, measured.logvar, config.prior, config.seed)
    metrics = validation_metrics(model, run.data, measured, samples=config.eval_samples,
                                 seed=config.seed)
    model.train()
    return metrics


def _record_epoch(progress: Progress, metrics: dict, train_loss: float,
                  patience: int) -> dict:
    """Add the epoch's row to the history, track the best val_loss, and decide on early
    stopping (after ``patience`` epochs without a better one; 0 = never); returns the row."""
    row = {"epoch": progress.epoch, "step": progress.step, "train_loss": train_loss, **metrics}
    progress.history.append(row)
    if metrics["val_loss"] < progress.best_val_loss:
        progress.best_val_loss, progress.best_epoch, progress.bad_epochs = \
            metrics["val_loss"], progress.epoch, 0
    else:
        progress.bad_epochs += 1
    if patience and progress.bad_epochs >= patience:
        log.info("early stop: val_loss did not improve for %d epochs", progress.bad_epochs)
        progress.finished = True
    return row


def _write_epoch(run: _Run, row: dict, kl_dims: list[float]) -> None:
    """Log the epoch's row; save the model (and its latent.json) when this epoch is the best
    so far; rewrite history.csv. Rank 0 only."""
    progress, out = run.progress, Path(run.config.out)
    log.info("epoch %d: %s", progress.epoch, ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    run.tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=progress.epoch)
    if progress.best_epoch == progress.epoch:
        save_model(run.model, out)
        write_json({"epoch": progress.epoch, "kl_per_dimension": kl_dims,
                    "active_units": row["active_units"]}, out / "latent.json")
    write_table(pd.DataFrame(progress.history), out / "history.csv")
