"""Vector quantization for the VQ-VAE (van den Oord et al. 2017): each of a molecule's M
encoder vectors is replaced by the nearest of K codebook vectors.

* Gradients pass straight through the rounding: the decoder's gradient at the quantized vector
  is handed to the encoder's vector unchanged.
* The codebook is not learned by gradient descent but as an exponential moving average of the
  encoder vectors assigned to each code (Razavi et al. 2019, Appendix): steadier, and no
  codebook loss to weigh.
* The commitment term ``||z_e - sg(q)||^2`` (summed over a molecule's vectors) keeps the encoder
  near its codes; the training loss weighs it by ``commitment``.
* Dead-code restarts (Dhariwal et al. 2020): a code whose moving-average use falls below one
  vector per batch is moved onto a random encoder vector of the batch, so the whole codebook
  stays in use instead of a few codes taking every molecule.

The codebook and its statistics are buffers (saved with the model, untouched by the
optimizer); they change only in training mode.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

DECAY = 0.99  # moving-average decay of the codebook statistics
RESTART_BELOW = 1.0  # a code used by fewer vectors per batch (moving average) is restarted
EPSILON = 1e-5


class VectorQuantizer(nn.Module):
    """Nearest-code quantization of [B, M, D] vectors onto a codebook of ``size`` x ``dim``."""

    codebook: torch.Tensor  # [K, D]
    ema_count: torch.Tensor  # [K] moving-average vectors per batch assigned to each code
    ema_sum: torch.Tensor  # [K, D] moving-average sum of those vectors
    initialized: torch.Tensor  # [] bool: the codebook was set from encoder vectors
    restarts: torch.Tensor  # [] int64: dead codes restarted so far

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.size, self.dim = size, dim
        self.register_buffer("codebook", torch.randn(size, dim) / math.sqrt(dim))
        self.register_buffer("ema_count", torch.zeros(size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    def nearest(self, vectors: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each vector [..., D] -> [...] (int64)."""
        flat = vectors.reshape(-1, self.dim).float()
        distances = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.T
                     + self.codebook.pow(2).sum(1))
        return distances.argmin(dim=1).view(vectors.shape[:-1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The codebook vectors [..., D] of codes [...]."""
        return self.codebook[codes]

    def forward(self, z_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize encoder vectors [B, M, D]: returns (quantized vectors [B, M, D] with
        straight-through gradients, codes [B, M], commitment per molecule averaged over the
        batch []). In training mode the codebook then moves toward the batch."""
        z_e = z_e.float()
        if self.training and not bool(self.initialized):
            self._initialize(z_e.detach().reshape(-1, self.dim))
        codes = self.nearest(z_e)
        q = self.lookup(codes)
        commitment = (z_e - q).pow(2).sum(dim=(1, 2)).mean()
        if self.training:
            self._update(z_e.detach().reshape(-1, self.dim), codes.reshape(-1))
        return z_e + (q - z_e).detach(), codes, commitment

    @torch.no_grad()
    def _initialize(self, vectors: torch.Tensor) -> None:
        """Start the codebook on random encoder vectors of the first batch."""
        self.codebook.copy_(self._random_rows(vectors, self.size))
        self.ema_sum.copy_(self.codebook)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, vectors: torch.Tensor, codes: torch.Tensor) -> None:
        """One moving-average step of the codebook, then restart the dead codes."""
        onehot = torch.zeros(len(codes), self.size, device=vectors.device)
        onehot.scatter_(1, codes.unsqueeze(1), 1.0)
        self.ema_count.mul_(DECAY).add_(onehot.sum(0), alpha=1 - DECAY)
        self.ema_sum.mul_(DECAY).add_(onehot.T @ vectors, alpha=1 - DECAY)
        total = self.ema_count.sum()  # Laplace smoothing keeps unused codes finite
        smoothed = (self.ema_count + EPSILON) / (total + self.size * EPSILON) * total
        self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        dead = self.ema_count < RESTART_BELOW
        n_dead = int(dead.sum())
        if n_dead:
            fresh = self._random_rows(vectors, n_dead)
            self.codebook[dead] = fresh
            self.ema_sum[dead] = fresh * RESTART_BELOW
            self.ema_count[dead] = RESTART_BELOW
            self.restarts.add_(n_dead)

    @staticmethod
    def _random_rows(vectors: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` random rows of ``vectors`` (with replacement, and a little noise, when there
        are fewer than ``n``)."""
        if len(vectors) >= n:
            return vectors[torch.randperm(len(vectors), device=vectors.device)[:n]].clone()
        picked = vectors[torch.randint(len(vectors), (n,), device=vectors.device)]
        return picked + 0.01 * picked.std() * torch.randn_like(picked)


def codebook_usage(codes: np.ndarray, size: int) -> dict[str, float]:
    """How much of a codebook of ``size`` codes the codes [N, M] (-1: none) use: perplexity
    (exp of the entropy of the code frequencies; ``size`` when all are used equally), codes
    used and dead codes (used by none)."""
    used = np.asarray(codes).ravel()
    used = used[used >= 0]
    counts = np.bincount(used, minlength=size).astype(np.float64)
    if not counts.sum():
        return {"codebook_perplexity": math.nan, "codes_used": 0.0, "dead_codes": float(size)}
    p = counts[counts > 0] / counts.sum()
    return {"codebook_perplexity": float(np.exp(-(p * np.log(p)).sum())),
            "codes_used": float((counts > 0).sum()), "dead_codes": float((counts == 0).sum())}
