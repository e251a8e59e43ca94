"""A Gaussian mixture prior trained with the VAE, in its KL term (``--prior learned:K``).

A prior fitted after training finds the codes but not what lies between them: the decoder has
never been asked to write from there, and samples from the gaps are poor molecules. Trained in
the KL term, the mixture moves toward the codes while the codes move toward it (the mixture-of-
Gaussians prior of Tomczak & Welling 2018); after each epoch its components become the model's
fitted prior (a diagonal mixture), which sampling then draws from. How much closer to the codes
a mixture gets than one Gaussian is measured in docs/cpu_model.md (``benchmarks/
code_density.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def kl_by_draw(log_prob: Callable[[torch.Tensor], torch.Tensor], logvar: torch.Tensor,
               z: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || p) of each molecule [B] for a density with no closed-form KL: q's
    entropy exactly (diagonal Gaussian, ``logvar`` [B, latent_dim]), the cross-entropy from one
    draw ``z`` of q (unbiased)."""
    entropy = 0.5 * (logvar.float() + 1.0 + math.log(2 * math.pi)).sum(-1)
    return -entropy - log_prob(z)


class MixturePrior(nn.Module):
    """K diagonal Gaussians with learned weights (``logits``), ``means`` and ``log_scales``."""

    def __init__(self, components: int, latent_dim: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.zeros(components, latent_dim))
        self.log_scales = nn.Parameter(torch.zeros(components, latent_dim))

    @torch.no_grad()
    def start_at(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        """Start the components at K molecules' posteriors [K, latent_dim] (equal weights),
        widened by a kernel-density bandwidth (Scott's rule) so the mixture starts about as
        good a density of the codes as one Gaussian: each component stands for many
        molecules, and at a training run's learning rate components started at single
        posteriors move too slowly to get there (docs/cpu_model.md)."""
        components, dim = mu.shape
        bandwidth = components ** (-2.0 / (dim + 4)) * mu.var(0) if components > 1 else 0.0
        self.logits.zero_()
        self.means.copy_(mu)
        self.log_scales.copy_(0.5 * torch.log(logvar.exp() + bandwidth))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of each row of ``z`` [B, latent_dim] -> [B], in float32.

        The squared distances come from matrix products, so memory stays [B, K]; the textbook
        form (``torch.distributions.MixtureSameFamily``, which the tests compare against)
        materializes [B, K, latent_dim].
        """
        z = z.float()
        precision = torch.exp(-2.0 * self.log_scales)  # [K, D]
        squared = (z.pow(2) @ precision.T - 2.0 * z @ (self.means * precision).T
                   + (self.means.pow(2) * precision).sum(-1))  # [B, K]
        component = -0.5 * squared - self.log_scales.sum(-1) \
            - 0.5 * z.shape[-1] * math.log(2 * math.pi)
        return torch.logsumexp(component + torch.log_softmax(self.logits, -1), dim=-1)

    def kl(self, logvar: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """KL(q(z|x) || this mixture) of each molecule [B], from the draw ``z`` the decoder
        also saw (:func:`kl_by_draw`)."""
        return kl_by_draw(self.log_prob, logvar, z)

    @torch.no_grad()
    def components(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weights [K], means [K, D], scales [K, D]): the mixture as plain tensors."""
        return (torch.softmax(self.logits, -1).detach().clone(), self.means.detach().clone(),
                self.log_scales.exp().detach().clone())
