"""The VAE's loss: per-molecule reconstruction + beta * KL (with free bits) + property MSE;
a VQ model's: reconstruction + commitment * ||z_e - sg(q)||^2 (no KL).

Also :func:`active_units`, the standard measure of how much of the latent space is used.
"""

from __future__ import annotations

import numpy as np
import torch

from molvae.data.batching import Batch
from molvae.model.likelihood import token_nll
from molvae.model.mixture_prior import MixturePrior
from molvae.model.vae import VAEOutput


def reconstruction_loss(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Token cross-entropy summed over each molecule's non-pad targets, averaged over molecules.

    Summing per molecule (rather than averaging per token) keeps the reconstruction term on
    the same scale as the KL term of the ELBO, so ``beta = 1`` means the true ELBO.
    """
    return token_nll(logits, tokens, pad_id).sum() / len(tokens)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each molecule in each latent dimension [B, latent_dim], in
    float32: the one formula behind the training loss and the per-molecule ELBO terms."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per latent dimension [latent_dim], averaged over the batch."""
    return kl_divergence(mu, logvar).mean(dim=0)


def active_units(mu: np.ndarray, threshold: float = 0.01) -> int:
    """Latent dimensions whose posterior mean varies across molecules (Burda et al. 2016)."""
    if len(mu) < 2:
        return 0
    return int((np.var(mu, axis=0) > threshold).sum())


def vae_loss(out: VAEOutput, batch: Batch, pad_id: int, beta: float, free_bits: float,
             property_weight: float, commitment: float = 0.25,
             prior: MixturePrior | None = None) -> dict[str, torch.Tensor]:
    """Loss terms of one batch: loss (what is minimized), recon, kl, and property_mse; for a
    VQ model (``out.commitment`` set) loss, recon and commitment, weighted by ``commitment``.

    The KL is against N(0, I), or against ``prior`` when one is trained with the model (then
    free bits must be 0: a mixture's KL does not split by dimension). Free bits floor each
    dimension's batch-mean KL (0 turns them off), so the optimizer gains nothing by
    collapsing a dimension below the floor.
    """
    recon = reconstruction_loss(out.logits, batch.tokens, pad_id)
    if out.commitment is not None:
        return {"recon": recon, "commitment": out.commitment,
                "loss": recon + commitment * out.commitment}
    if prior is not None:
        kl = kl_term = prior.kl(out.logvar, out.z).mean()
    else:
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
