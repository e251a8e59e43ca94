"""The second training step of a VQ model: its code prior, fitted to the training molecules'
codes.

``molvae train --latent vq`` runs it once the VAE has finished: it encodes the training and
validation splits to codes with the best VAE (OUT/model.pt), trains the model's
:class:`~molvae.model.code_prior.CodePrior` for ``code_prior_epochs`` passes over the training
codes (AdamW at ``lr``, batches of ``batch_size``, shuffled by ``seed`` and the epoch), keeps
the epoch with the lowest validation NLL, and saves it into OUT/model.pt (which can sample from
then on). OUT/code_prior.pt is its checkpoint (weights, optimizer, where it stands, the best
weights so far): ``max_minutes`` or SIGTERM stop the step after a checkpoint, and ``--resume``
continues it. A checkpoint made for another VAE (a fresh run, or a finished run extended with
more epochs) is set aside: the codes changed. OUT/code_prior.csv holds its history: per epoch
the training and validation NLL of the codes, in bits per molecule.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from molvae import chem
from molvae.data.batching import DeviceTokens, PreparedData
from molvae.io import atomic_path, load_tensors, write_table
from molvae.model import MODEL_FILE
from molvae.model.store import model_from_state, save_model
from molvae.model.vq import VQVAE
from molvae.tracking import Tracker
from molvae.training.config import TrainConfig
from molvae.training.stopping import StopRequest

log = logging.getLogger(__name__)

CHECKPOINT = "code_prior.pt"
FORMAT = "molvae-code-prior/1"
LN2 = math.log(2)


@dataclass
class PriorProgress:
    """Where the code prior step stands (saved in its checkpoint as plain data)."""

    vae_step: int  # the VAE's training steps when its codes were taken
    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_bits: float = math.inf
    best_epoch: int = 0
    finished: bool = False
    history: list[dict] = field(default_factory=list)


@torch.no_grad()
def split_codes(model: VQVAE, tokens: DeviceTokens, batch_size: int) -> torch.Tensor:
    """The codes [N, M] of a tokenized split, in its order."""
    codes = torch.empty((len(tokens), model.codes), dtype=torch.long, device=model.device)
    for start in range(0, len(tokens), batch_size):
        batch = tokens.batch(range(start, min(len(tokens), start + batch_size)))
        assert batch.rows is not None
        codes[batch.rows.to(model.device)] = model.quantize(batch.tokens, batch.lengths)[1]
    return codes


def _load(out: Path, vae_step: int, resume: bool) -> dict | None:
    path = out / CHECKPOINT
    if not path.is_file():
        return None
    state = load_tensors(path, "molvae code prior checkpoint")
    if state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a molvae code prior checkpoint")
    if not resume or state["progress"]["vae_step"] != vae_step:
        log.info("%s belongs to another VAE: the code prior starts afresh", path)
        return None
    return state


def _save(out: Path, prior: torch.nn.Module, optimizer: torch.optim.Optimizer,
          progress: PriorProgress, best: dict) -> None:
    with atomic_path(out / CHECKPOINT) as tmp:
        torch.save({"format": FORMAT, "prior": prior.state_dict(), "best": best,
                    "optimizer": optimizer.state_dict(), "progress": asdict(progress)}, tmp)


def train_code_prior(config: TrainConfig, data: PreparedData, device: torch.device,
                     stop: StopRequest, tracker: Tracker, vae_step: int) -> dict:
    """Train (or resume) the code prior of the VQ model in ``config.out`` (see the module
    docstring); returns its summary: finished, epoch, val_code_nll_bits and, once finished,
    prior_validity and prior_uniqueness of ``eval_samples`` samples."""
    started = time.perf_counter()
    out = Path(config.out)
    model = model_from_state(load_tensors(out / MODEL_FILE, "molvae model"), device)
    assert isinstance(model, VQVAE)
    prior = model.code_prior
    optimizer = torch.optim.AdamW(prior.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    state = _load(out, vae_step, config.resume)
    progress = PriorProgress(vae_step) if state is None else PriorProgress(**state["progress"])
    best = {k: v.clone() for k, v in prior.state_dict().items()} if state is None \
        else state["best"]
    if state is not None:
        prior.load_state_dict(state["prior"])
        optimizer.load_state_dict(state["optimizer"])
    if progress.finished and progress.epoch < config.code_prior_epochs:
        progress.finished = False  # more epochs asked for: go on
    train = split_codes(model, DeviceTokens(data.train, device), config.batch_size)
    val = split_codes(model, DeviceTokens(data.val, device), config.batch_size)
    while progress.epoch < config.code_prior_epochs and not progress.finished:
        prior.train()
        order = np.random.default_rng([config.seed, progress.epoch]).permutation(len(train))
        starts = range(0, len(train), config.batch_size)
        for start in starts[progress.batch:]:
            loss = prior.nll(train[torch.as_tensor(order[start:start + config.batch_size],
                                                   device=device)]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(prior.parameters(), config.grad_clip)
            optimizer.step()
            progress.step += 1
            progress.batch += 1
            if stop.out_of_time():
                _save(out, prior, optimizer, progress, best)
                return {"finished": False, "epoch": progress.epoch,
                        "val_code_nll_bits": progress.best_bits}
        prior.eval()
        row = {"epoch": progress.epoch + 1, "step": progress.step,
               "train_code_nll_bits": _mean_bits(model, train),
               "val_code_nll_bits": _mean_bits(model, val)}
        progress.epoch, progress.batch = progress.epoch + 1, 0
        progress.history.append(row)
        if row["val_code_nll_bits"] < progress.best_bits or not progress.best_epoch:
            progress.best_bits, progress.best_epoch = row["val_code_nll_bits"], progress.epoch
            best = {k: v.detach().clone() for k, v in prior.state_dict().items()}
        log.info("code prior epoch %d: %s", progress.epoch,
                 ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
        tracker.log_metrics({f"code_prior_{k}": v for k, v in row.items() if k != "epoch"},
                            step=progress.epoch)
        write_table(pd.DataFrame(progress.history), out / "code_prior.csv")
        _save(out, prior, optimizer, progress, best)
    prior.load_state_dict(best)
    prior.eval()
    model.code_prior_trained.fill_(True)
    save_model(model, out)
    progress.finished = True
    _save(out, prior, optimizer, progress, best)
    generated = model.sample(config.eval_samples, seed=config.seed) if config.eval_samples \
        else []
    valid = [s for s in generated if chem.to_mol(s) is not None]
    summary = {"finished": True, "epoch": progress.epoch,
               "val_code_nll_bits": progress.best_bits,
               "prior_validity": len(valid) / len(generated) if generated else math.nan,
               "prior_uniqueness": len(set(valid)) / len(valid) if valid else math.nan,
               "seconds": time.perf_counter() - started}
    tracker.log_metrics({f"code_prior_{k}": float(v) for k, v in summary.items()})
    return summary


@torch.no_grad()
def _mean_bits(model: VQVAE, codes: torch.Tensor, batch_size: int = 8192) -> float:
    """Mean -log2 p(codes) per molecule under the model's code prior."""
    if not len(codes):
        return math.nan
    total = sum(float(model.code_prior.nll(codes[s:s + batch_size]).sum())
                for s in range(0, len(codes), batch_size))
    return total / len(codes) / LN2
