"""The training loop: fit a SELFIES VAE on a prepared folder, resumable, single GPU or DDP.

Loss per batch: ``recon + beta * KL (+ property_weight * property MSE)`` where ``recon`` is
token cross-entropy summed over each molecule and averaged over molecules (see
:func:`molvae.model.loss.reconstruction_loss`), KL is summed over latent dimensions and averaged
over molecules, and ``beta`` follows a linear or cyclical warm-up to ``beta_max``. Free bits
floor each dimension's batch-mean KL so the optimizer gains nothing by collapsing it.

The same script runs under ``torchrun --nproc_per_node=K``: each rank takes every K-th
batch (so the global batch is ``K * batch_size``) and only rank 0 evaluates, writes and logs.

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
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from molvae.config import ConfigError, to_dict
from molvae.data.batching import DeviceTokens, PreparedData, epoch_batches, load_prepared
from molvae.devices import autocast
from molvae.io import write_json, write_table
from molvae.model.loss import vae_loss
from molvae.model.presets import build_model
from molvae.model.store import model_from_state, model_state, save_model
from molvae.model.vae import SelfiesVAE
from molvae.tracking import Tracker
from molvae.training.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from molvae.training.config import FIXED_ON_RESUME, RESUME_KEYS, TrainConfig
from molvae.training.distributed import Distributed, setup_distributed
from molvae.training.evaluate import evaluate
from molvae.training.schedules import kl_weight, lr_factor

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


@dataclass
class TrainResult:
    """What a training run produced."""

    out: Path
    progress: Progress
    seconds: float
    model_uri: str | None = None

    def summary(self) -> str:
        p = self.progress
        state = "finished" if p.finished else \
            "stopped early by max_steps, max_minutes or SIGTERM (--resume continues)"
        best = (f"best val_loss {p.best_val_loss:.3f} at epoch {p.best_epoch}"
                if p.best_epoch else "no epoch completed yet")
        return (f"training {state}: {p.epoch} epochs, {p.step} steps, {best}; "
                f"model in {self.out} ({self.seconds:.1f} s)")

    def headline(self) -> dict[str, float]:
        """The numbers models are compared by, taken at the best epoch (the model kept)."""
        p = self.progress
        best = next((row for row in p.history if row["epoch"] == p.best_epoch), {})
        return {"best_val_loss": p.best_val_loss, "epochs": float(p.epoch),
                **{k: float(best[k]) for k in ("molecule_accuracy", "prior_validity",
                                               "active_units") if k in best}}


def _new_model(config: TrainConfig, data: PreparedData) -> SelfiesVAE:
    model = build_model(data.vocab, config.preset, data.property_names, data.condition_names,
                        embed_dim=config.embed_dim, hidden_dim=config.hidden_dim,
                        num_layers=config.num_layers, latent_dim=config.latent_dim,
                        encoder_hidden_dim=config.encoder_hidden_dim,
                        encoder_layers=config.encoder_layers,
                        word_dropout=config.word_dropout)
    model.property_mean.copy_(torch.from_numpy(data.property_mean))
    model.property_std.copy_(torch.from_numpy(data.property_std))
    model.condition_mean.copy_(torch.from_numpy(data.condition_mean))
    model.condition_std.copy_(torch.from_numpy(data.condition_std))
    return model


class StopRequest:
    """When training should stop early: at ``max_steps``, after ``max_minutes``, or on SIGTERM.

    A stop always writes a checkpoint first, so a time-boxed or signalled run (a CPU campaign
    run between working sessions, a preempted cloud job) loses no work and ``--resume``
    continues it."""

    def __init__(self, max_steps: int | None, max_minutes: float | None,
                 check_every: int) -> None:
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.deadline: float | None = None
        self.check_every = check_every
        self.signalled = False

    def start_clock(self) -> None:
        """Start counting ``max_minutes`` (when training starts, after the data is loaded)."""
        if self.max_minutes is not None:
            self.deadline = time.monotonic() + 60 * self.max_minutes

    def __call__(self, step: int, job: Distributed) -> bool:
        """Whether to stop after ``step``. The clock and the signal are read every
        ``check_every`` steps and rank 0 decides, so all ranks of a DDP job stop together."""
        if self.max_steps is not None and step >= self.max_steps:
            return True
        if step % self.check_every:
            return False
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return bool(job.from_main(self.signalled or late))

    @contextmanager
    def on_sigterm(self) -> Iterator[None]:
        """Turn SIGTERM into a stop at the next step while training runs (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: object) -> None:
            log.warning("SIGTERM: stopping after this step (a checkpoint is written)")
            self.signalled = True

        previous = signal.signal(signal.SIGTERM, handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


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


def _train(config: TrainConfig, tracker: Tracker, job: Distributed,
           should_stop: StopRequest) -> Progress:
    out, device = Path(config.out), job.device
    data = load_prepared(config.data, config.property_head, config.max_train, config.seed,
                         config.condition)
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
        _check_resume_options(config, checkpoint["train_config"])
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

    train_tokens = DeviceTokens(data.train, device)
    should_stop.start_clock()
    while progress.epoch < config.epochs and not progress.finished:
        batches = epoch_batches(data.train.lengths, config.batch_size, config.seed,
                                progress.epoch, job.rank, job.world_size)
        bar = tqdm(total=len(batches), initial=progress.batch, unit="batch",
                   desc=f"epoch {progress.epoch + 1}/{config.epochs}",
                   **({} if job.is_main else {"disable": True}))  # else TQDM_DISABLE decides
        loss_sum = torch.tensor(progress.epoch_loss_sum, device=device)
        window_start, window_molecules = time.perf_counter(), 0
        for rows in batches[progress.batch:]:
            beta = kl_weight(progress.step, config.kl_schedule, config.beta_max,
                             config.kl_warmup_steps, config.kl_cycle_steps)
            batch = train_tokens.batch(rows)
            with autocast(device, config.amp):
                terms = vae_loss(step_model(batch.tokens, batch.lengths, batch.conditions), batch,
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
            stop = should_stop(progress.step, job)
            if stop or progress.step % config.checkpoint_every == 0:
                progress.epoch_loss_sum = float(loss_sum)
                checkpoint_now()
            if stop:
                bar.close()
                return progress
        bar.close()
        train_loss = float(loss_sum) / max(progress.batch, 1)
        progress.epoch, progress.batch, progress.epoch_loss_sum = progress.epoch + 1, 0, 0.0
        metrics = evaluate(
            model, data, device, beta=config.beta_max, property_weight=config.property_weight,
            batch_size=config.batch_size, eval_molecules=config.eval_molecules,
            eval_samples=config.eval_samples, seed=config.seed, amp=config.amp,
            prior_components=config.prior_components,
        ) if job.is_main else None
        metrics = job.from_main(metrics)
        _end_epoch(progress, metrics, train_loss, config, model, tracker, job.is_main)
        checkpoint_now()
    if not progress.finished:
        progress.finished = True
        checkpoint_now()
    return progress


def _check_resume_options(config: TrainConfig, saved: dict) -> None:
    """Refuse options the checkpoint's weights fix (a new value would be ignored while the
    checkpoint recorded it); warn about others that make the run differ from an
    uninterrupted one."""
    current = to_dict(config)
    fixed = [k for k in FIXED_ON_RESUME if k in saved and saved[k] != current[k]]
    if fixed:
        raise ConfigError(f"cannot resume {config.out} with changed "
                          f"{', '.join(f'{k} ({saved[k]!r} -> {current[k]!r})' for k in fixed)}: "
                          "they fix the model's architecture; train into another --out instead")
    changed = sorted(k for k, v in current.items() if saved.get(k) != v and k not in RESUME_KEYS)
    if changed:
        log.warning("resuming with changed options %s: the run will differ from an "
                    "uninterrupted one", ", ".join(changed))


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


