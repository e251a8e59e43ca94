"""Validation metrics computed after every epoch, batched on the training device.

Validation is seeded and runs on a forked random state, so evaluating (or not) never changes
the random numbers training draws: a resumed run stays identical to an uninterrupted one.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from molvae import chem
from molvae.data.batching import DeviceTokens, PreparedData
from molvae.devices import autocast
from molvae.model.loss import active_units, kl_per_dimension, vae_loss
from molvae.model.vae import SelfiesVAE


@torch.no_grad()
def evaluate(model: SelfiesVAE, data: PreparedData, device: torch.device, *, beta: float,
             property_weight: float, batch_size: int, eval_molecules: int, eval_samples: int,
             seed: int, amp: bool, prior_components: int = 1) -> dict:
    """Validation metrics; seeded and run on a forked RNG, so training randomness is untouched.

    Returns val_loss (recon + ``beta`` * KL, the target objective), val_recon, val_kl,
    token_accuracy (teacher forcing from mu), molecule_accuracy (greedy decoding of mu equals
    the canonical SMILES), prior_validity / prior_uniqueness of ``eval_samples`` samples from
    the fitted prior (refitted here to the validation latents with ``prior_components``
    Gaussians, which the model keeps),
    active_units, and kl_per_dimension (a list).
    """
    model.eval()
    pad = model.vocab.pad_id
    n = len(data.val)
    val = DeviceTokens(data.val, device)
    zero = torch.zeros((), device=device)  # sums stay on the device: one sync at the end
    sums: dict[str, torch.Tensor] = {}
    correct, total = zero.clone(), zero.clone()
    mu = torch.empty((n, model.latent_dim), device=device)
    logvar = torch.empty_like(mu)
    kl_dims = torch.zeros(model.latent_dim, device=device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            rows = range(start, min(n, start + batch_size))
            batch = val.batch(rows)
            with autocast(device, amp):
                out = model(batch.tokens, batch.lengths, batch.conditions)
                terms = vae_loss(out, batch, pad, beta, 0.0, property_weight)
                logits = model.teacher_forced_logits(out.mu, batch.tokens, batch.conditions)
            targets = batch.tokens[:, 1:]
            known = targets != pad
            correct += ((logits.argmax(-1) == targets) & known).sum()
            total += known.sum()
            for key, value in terms.items():
                sums[key] = sums.get(key, zero) + value.detach().float() * len(rows)
            kl_dims += kl_per_dimension(out.mu, out.logvar) * len(rows)
            mu[start:start + len(rows)] = out.mu.float()
            logvar[start:start + len(rows)] = out.logvar.float()
    mu, logvar = mu.cpu().numpy(), logvar.cpu().numpy()
    sums = {key: float(value) for key, value in sums.items()}
    correct, total, kl_dims = int(correct), int(total), kl_dims.cpu()
    count = min(eval_molecules, n)
    # a conditional model decodes with the molecules' own conditions, and samples for those of
    # validation molecules in turn (raw values: decode and sample standardize them)
    raw = None if data.val.conditions is None else \
        data.val.conditions * data.condition_std + data.condition_mean
    rebuilt = model.decode(mu[:count], conditions=None if raw is None else raw[:count])
    model.fit_prior(mu, logvar, min(prior_components, n // 2), seed)
    samples = model.sample(eval_samples, seed=seed, conditions=None if raw is None
                           else raw[np.arange(eval_samples) % n])
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
