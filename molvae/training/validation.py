"""Validation after every epoch: the validation split measured with the epoch's model.

Two steps, because the training loop refits the model's prior between them: the prior the
model is saved with is fitted to the validation codes, and prior_validity measures that prior.
:func:`measure_validation` runs the split through the model and reconstructs some of it;
:func:`validation_metrics` adds what the refitted prior generates and turns both into the
epoch's metrics. Neither changes the model; the caller puts it in eval mode around both.

Validation is seeded and runs on a forked random state, so validating (or not) never changes
the random numbers training draws: a resumed run stays identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from molvae import chem
from molvae.data.batching import DeviceTokens, PreparedData
from molvae.devices import autocast
from molvae.model.loss import active_units, kl_per_dimension, vae_loss
from molvae.model.mixture_prior import MixturePrior
from molvae.model.quantizer import codebook_usage
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import VQVAE


@dataclass
class ValidationPass:
    """The validation split run through the model once (codes and decodings in split order).

    Attributes:
        term_sums: each loss term (``loss``, ``recon``, ``kl``, ...) summed over molecules.
        correct_tokens: next tokens teacher forcing from mu got right (padding excluded).
        known_tokens: next tokens there were to get right.
        kl_per_dimension: KL of each latent dimension, averaged over molecules.
        mu: posterior means [N, latent_dim], the codes the prior is refitted to.
        logvar: posterior log-variances [N, latent_dim].
        reconstructed: greedy decodings of the first ``reconstruct`` rows of ``mu``.
    """

    term_sums: dict[str, float]
    correct_tokens: int
    known_tokens: int
    kl_per_dimension: list[float]
    mu: np.ndarray
    logvar: np.ndarray
    reconstructed: list[str | None]


def _raw_conditions(data: PreparedData) -> np.ndarray | None:
    """The validation molecules' conditions in their own units (decode and sample standardize
    them), or None for an unconditional model."""
    if data.val.conditions is None:
        return None
    return data.val.conditions * data.condition_std + data.condition_mean


@torch.no_grad()
def measure_validation(model: SelfiesVAE, data: PreparedData, device: torch.device, *,
                       beta: float, property_weight: float, batch_size: int,
                       reconstruct: int, seed: int, amp: bool, commitment: float = 0.25,
                       prior: MixturePrior | None = None) -> ValidationPass:
    """Run the validation split through ``model`` (in eval mode) on a forked, seeded RNG.

    The loss uses ``beta`` (the target objective's KL weight, not the warm-up's) and no free
    bits, and its KL is against ``prior`` when one is trained with the model (the reported
    ``kl_per_dimension`` stays against N(0, I)); teacher forcing starts from mu;
    ``reconstruct`` codes are decoded greedily, a conditional model with the molecules' own
    conditions. A VQ model's mu are its quantized
    vectors (no KL: ``kl_per_dimension`` stays 0), its loss weighs ``commitment``.
    """
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
                terms = vae_loss(out, batch, pad, beta, 0.0, property_weight, commitment, prior)
                logits = model.teacher_forced_logits(out.mu, batch.tokens, batch.conditions)
            targets = batch.tokens[:, 1:]
            known = targets != pad
            correct += ((logits.argmax(-1) == targets) & known).sum()
            total += known.sum()
            for key, value in terms.items():
                sums[key] = sums.get(key, zero) + value.detach().float() * len(rows)
            if out.commitment is None:
                kl_dims += kl_per_dimension(out.mu, out.logvar) * len(rows)
            assert batch.rows is not None  # DeviceTokens.batch always says which rows
            order = batch.rows.to(device)  # the batch is longest first: back to split order
            mu[order] = out.mu.float()
            logvar[order] = out.logvar.float()
    codes = mu.cpu().numpy()
    count = min(reconstruct, n)
    raw = _raw_conditions(data)
    return ValidationPass(
        term_sums={key: float(value) for key, value in sums.items()},
        correct_tokens=int(correct), known_tokens=int(total),
        kl_per_dimension=(kl_dims.cpu() / n).tolist(), mu=codes,
        logvar=logvar.cpu().numpy(),
        reconstructed=model.decode(codes[:count],
                                   conditions=None if raw is None else raw[:count]))


@torch.no_grad()
def validation_metrics(model: SelfiesVAE, data: PreparedData, measured: ValidationPass, *,
                       samples: int, seed: int) -> dict:
    """The epoch's validation metrics from ``measured`` and ``samples`` seeded samples of
    the model's current (just refitted) prior; a conditional model samples for the validation
    molecules' conditions in turn.

    Returns val_loss (recon + beta * KL, the target objective), val_recon, val_kl (a VQ
    model: val_commitment and its codebook use instead, and no prior samples before its code
    prior is trained, and its active_units count code positions that vary) (and
    val_property_mse with a property head), token_accuracy, molecule_accuracy (greedy decoding
    of mu equals the canonical SMILES), prior_validity, prior_uniqueness, active_units and
    kl_per_dimension (a list).
    """
    n = len(data.val)
    sums = measured.term_sums
    rebuilt = measured.reconstructed
    raw = _raw_conditions(data)
    untrained = isinstance(model, VQVAE) and not bool(model.code_prior_trained)
    generated = [] if untrained else \
        model.sample(samples, seed=seed, conditions=None if raw is None
                     else raw[np.arange(samples) % n])
    valid = [s for s in generated if chem.to_mol(s) is not None]
    codes = model.codes_of(measured.mu) if isinstance(model, VQVAE) else None
    return {
        "val_loss": sums["loss"] / n, "val_recon": sums["recon"] / n,
        **({"val_commitment": sums["commitment"] / n,
            **codebook_usage(codes, model.config.codebook_size)}
           if codes is not None else {"val_kl": sums["kl"] / n}),
        **({"val_property_mse": sums["property_mse"] / n} if "property_mse" in sums else {}),
        "token_accuracy": measured.correct_tokens / max(measured.known_tokens, 1),
        "molecule_accuracy": float(np.mean([a == b for a, b in
                                            zip(rebuilt, data.val_smiles[:len(rebuilt)],
                                                strict=True)]))
        if rebuilt else math.nan,
        "prior_validity": len(valid) / len(generated) if generated else math.nan,
        "prior_uniqueness": len(set(valid)) / len(valid) if valid else math.nan,
        # a VQ model's: the code positions that differ between molecules
        "active_units": active_units(measured.mu) if codes is None
        else int((codes.min(axis=0) != codes.max(axis=0)).sum()),
        "kl_per_dimension": measured.kl_per_dimension,
    }
