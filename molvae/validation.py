"""The training objective and the validation metrics computed after every epoch.

Validation is seeded and runs on a forked random state, so evaluating (or not) never changes
the random numbers training draws: a resumed run stays identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from molvae import chem
from molvae.batching import Batch, PreparedData, collate
from molvae.model import SelfiesVAE, VAEOutput

if TYPE_CHECKING:
    from molvae.train import TrainConfig


def reconstruction_loss(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Token cross-entropy summed over each molecule's non-pad targets, averaged over molecules.

    Summing per molecule (rather than averaging per token) keeps the reconstruction term on
    the same scale as the KL term of the ELBO, so ``beta = 1`` means the true ELBO.
    """
    targets = tokens[:, 1:]
    per_token = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=pad_id,
                                reduction="none")
    return per_token.sum() / len(tokens)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dimension [latent_dim], averaged over the batch."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def active_units(mu: np.ndarray, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across molecules (Burda et al. 2016)."""
    if len(mu) < 2:
        return 0
    return int((np.var(mu, axis=0) > threshold).sum())


def objective(out: VAEOutput, batch: Batch, pad_id: int, beta: float, free_bits: float = 0.0,
              property_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Loss terms of one batch: loss (what is minimized), recon, kl, and property_mse."""
    recon = reconstruction_loss(out.logits, batch.tokens, pad_id)
    kl_dims = kl_per_dimension(out.mu, out.logvar)
    kl = kl_dims.sum()
    kl_term = kl_dims.clamp(min=free_bits).sum() if free_bits > 0 else kl
    terms = {"recon": recon, "kl": kl, "loss": recon + beta * kl_term}
    if out.properties is not None and batch.properties is not None:
        known = ~torch.isnan(batch.properties)
        error = (out.properties.float() - batch.properties.nan_to_num()).pow(2) * known
        terms["property_mse"] = error.sum() / known.sum().clamp(min=1)
        terms["loss"] = terms["loss"] + property_weight * terms["property_mse"]
    return terms


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: SelfiesVAE, data: PreparedData, config: TrainConfig,
             device: torch.device) -> dict:
    """Validation metrics; seeded and run on a forked RNG, so training randomness is untouched.

    Returns val_loss (recon + beta_max * KL, the target objective), val_recon, val_kl,
    token_accuracy (teacher forcing from mu), molecule_accuracy (greedy decoding of mu equals
    the canonical SMILES), prior_validity / prior_uniqueness of ``eval_samples`` samples from
    the fitted prior (refitted here to the validation latents, which the model keeps),
    active_units, and kl_per_dimension (a list).
    """
    model.eval()
    pad = model.vocab.pad_id
    n = len(data.val)
    sums: dict[str, float] = {}
    correct = total = 0
    mu = np.empty((n, model.latent_dim), dtype=np.float32)
    kl_dims = torch.zeros(model.latent_dim)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        for start in range(0, n, config.batch_size):
            rows = range(start, min(n, start + config.batch_size))
            batch = collate([data.val[i] for i in rows]).to(device)
            with autocast(device, config.amp):
                out = model(batch.tokens, batch.lengths)
                terms = objective(out, batch, pad, config.beta_max, 0.0, config.property_weight)
                logits = model.teacher_forced_logits(out.mu, batch.tokens)
            targets = batch.tokens[:, 1:]
            known = targets != pad
            correct += int(((logits.argmax(-1) == targets) & known).sum())
            total += int(known.sum())
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value) * len(rows)
            kl_dims += kl_per_dimension(out.mu, out.logvar).cpu() * len(rows)
            mu[start:start + len(rows)] = out.mu.float().cpu().numpy()
    count = min(config.eval_molecules, n)
    rebuilt = model.decode(mu[:count])
    model.fit_prior(mu)
    samples = model.sample(config.eval_samples, seed=config.seed)
    valid = [s for s in samples if chem.to_mol(s) is not None]
    model.train()
    return {
        "val_loss": sums["loss"] / n, "val_recon": sums["recon"] / n, "val_kl": sums["kl"] / n,
        **({"val_property_mse": sums["property_mse"] / n} if "property_mse" in sums else {}),
        "token_accuracy": correct / max(total, 1),
        "molecule_accuracy": float(np.mean([a == b for a, b in
                                            zip(rebuilt, data.val_smiles[:count], strict=True)]))
        if count else math.nan,
        "prior_validity": len(valid) / len(samples) if samples else math.nan,
        "prior_uniqueness": len(set(valid)) / len(valid) if valid else math.nan,
        "active_units": active_units(mu),
        "kl_per_dimension": (kl_dims / n).tolist(),
    }
