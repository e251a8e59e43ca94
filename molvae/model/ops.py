"""Molecule-level uses of a trained :class:`~molvae.model.vae.SelfiesVAE` beyond sampling.

* :func:`elbo_terms`: per molecule, the posterior (mu, sigma) and the two terms of the ELBO,
  the reconstruction negative log-likelihood of the molecule's tokens given ``z = mu`` under
  teacher forcing, and KL(q(z|x) || N(0, I)). Their sum, the negative ELBO, is an
  out-of-distribution score: molecules unlike the training data cost more nats.
* :func:`interpolation_path`: latent points between two codes, on a straight line or on a
  great circle (spherical interpolation, White 2016) around the prior's centre, and
  :func:`interpolate`, the molecules along it (what ``molvae interpolate`` and
  ``molvae.interpolate`` write).

A VQ model (:mod:`molvae.model.vq`) gets :class:`CodeTerms`: its posterior is one code
sequence c, so the KL term of its ELBO is -log p(c) under its code prior (``code_nll``), and
the negative ELBO is the decoder's NLL plus the codes' NLL.

Inputs that cannot be used keep their row, with NaN numbers and a reason. A molecule with
tokens outside the model's vocabulary is one the decoder cannot write: its likelihood under the
model is exactly 0, so its NLL and negative ELBO are +inf (the most unusual there is), its
posterior and KL NaN (as ``<unk>`` those tokens would give some other molecule's), with the
tokens named in its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from molvae.data.batching import pad_batch
from molvae.data.tokens import tokenize
from molvae.model.likelihood import token_nll
from molvae.model.loss import kl_divergence
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import VQVAE, require_gaussian

INTERPOLATIONS = ("linear", "spherical")
SCORES = ("nll_per_token", "neg_elbo", "nll")


@dataclass
class ElboTerms:
    """Per-molecule results of :func:`elbo_terms` (arrays of length N, NaN where unusable).

    Attributes:
        smiles: canonical SMILES (None when the input is not a molecule).
        reason: why a row is unusable (None when it is usable): not a molecule, or tokens
            outside the model's vocabulary (then nll is +inf, see the module docstring).
        mu, logvar: [N, latent_dim] posterior mean and log-variance.
        nll: reconstruction negative log-likelihood in nats (summed over tokens, eos included).
        kl: KL divergence of the posterior from N(0, I), in nats.
        n_tokens: predicted tokens (the SELFIES tokens plus eos).
        unknown_tokens: tokens outside the model's vocabulary (NaN when not a molecule).
    """

    smiles: list[str | None]
    reason: list[str | None]
    mu: np.ndarray
    logvar: np.ndarray
    nll: np.ndarray
    kl: np.ndarray
    n_tokens: np.ndarray
    unknown_tokens: np.ndarray

    @property
    def neg_elbo(self) -> np.ndarray:
        """nll + kl; +inf where nll is (a molecule the model cannot write has no posterior)."""
        return np.where(np.isposinf(self.nll), np.inf, self.nll + self.kl)

    @property
    def nll_per_token(self) -> np.ndarray:
        return self.nll / self.n_tokens

    def table(self, latents: bool = True) -> pd.DataFrame:
        """One row per molecule: smiles, reason, the ELBO terms, then mu_i and sigma_i."""
        columns: dict[str, object] = {
            "smiles": self.smiles, "reason": self.reason, "neg_elbo": self.neg_elbo,
            "nll": self.nll, "nll_per_token": self.nll_per_token, "kl": self.kl,
            "n_tokens": self.n_tokens, "unknown_tokens": self.unknown_tokens}
        if latents:
            columns.update({f"mu_{i}": self.mu[:, i] for i in range(self.mu.shape[1])})
            sigma = np.exp(0.5 * self.logvar)
            columns.update({f"sigma_{i}": sigma[:, i] for i in range(sigma.shape[1])})
        return pd.DataFrame(columns)


@dataclass
class CodeTerms(ElboTerms):
    """A VQ model's :class:`ElboTerms`: ``kl`` is ``code_nll``, -log p(codes) under the code
    prior in nats (NaN before the prior is trained); ``mu`` holds the quantized vectors.

    Attributes:
        codes: [N, M] each molecule's codes (-1 where unusable).
        bits: what a code sequence holds at most, M · log2 K bits.
    """

    codes: np.ndarray
    bits: float

    def table(self, latents: bool = True) -> pd.DataFrame:
        """One row per molecule: smiles, reason, neg_elbo, nll, nll_per_token, code_nll,
        n_tokens, unknown_tokens, then code_0..code_{M-1} (empty where unusable)."""
        table = super().table(latents=False).rename(columns={"kl": "code_nll"})
        if latents:
            for i in range(self.codes.shape[1]):
                column = self.codes[:, i]
                table[f"code_{i}"] = pd.array([int(c) if c >= 0 else None for c in column],
                                              dtype="Int64")
        return table


@torch.no_grad()
def elbo_terms(model: SelfiesVAE, smiles: Sequence[str | None], batch_size: int = 512
               ) -> ElboTerms:
    """Posterior and ELBO terms of each molecule (see the module docstring)."""
    if isinstance(model, VQVAE):
        return code_terms(model, smiles, batch_size)
    return _terms(model, smiles, batch_size)


def _terms(model: SelfiesVAE, smiles: Sequence[str | None], batch_size: int) -> ElboTerms:
    read = tokenize(model.vocab, smiles)
    ids = read.ids
    n, dim = len(ids), model.latent_dim
    mu = np.full((n, dim), np.nan, dtype=np.float32)
    logvar = mu.copy()
    nll, kl = np.full(n, np.nan), np.full(n, np.nan)
    n_tokens, unknown = np.full(n, np.nan), np.full(n, np.nan)
    for i, pieces in enumerate(read.tokens):
        if pieces:
            unknown[i] = sum(t not in model.vocab.index for t in pieces)
            n_tokens[i] = len(pieces) + 1
    nll[unknown > 0] = np.inf  # p(x) = 0: the decoder has no token to write them with
    pad_id = model.vocab.pad_id
    known = {i: x for i, x in enumerate(ids) if x is not None}
    usable = sorted(known, key=lambda i: len(known[i]))
    for start in range(0, len(usable), batch_size):
        rows = usable[start:start + batch_size]
        tokens, lengths = pad_batch([known[i] for i in rows], pad_id)
        tokens = tokens.to(model.device)
        batch_mu, batch_logvar = model.encode_tokens(tokens, lengths)
        per_token = token_nll(model.teacher_forced_logits(batch_mu, tokens), tokens, pad_id)
        mu[rows] = batch_mu.float().cpu().numpy()
        logvar[rows] = batch_logvar.float().cpu().numpy()
        nll[rows] = per_token.sum(dim=1).double().cpu().numpy()
        if not isinstance(model, VQVAE):
            kl[rows] = kl_divergence(batch_mu, batch_logvar).sum(dim=1).double().cpu().numpy()
        n_tokens[rows] = (lengths - 1).numpy()
    return ElboTerms(read.smiles, read.reasons, mu, logvar, nll, kl, n_tokens, unknown)


@torch.no_grad()
def code_terms(model: VQVAE, smiles: Sequence[str | None], batch_size: int = 512) -> CodeTerms:
    """:class:`CodeTerms` of each molecule under a VQ model."""
    terms = _terms(model, smiles, batch_size)  # kl stays NaN: the codes' NLL replaces it
    codes = model.codes_of(terms.mu)
    ok = (codes >= 0).all(axis=1)
    code_nll = np.full(len(codes), np.nan)
    if bool(model.code_prior_trained) and ok.any():
        code_nll[ok] = model.code_nll(codes[ok])
    return CodeTerms(terms.smiles, terms.reason, terms.mu, terms.logvar, terms.nll, code_nll,
                     terms.n_tokens, terms.unknown_tokens, codes, model.bits_per_molecule)


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation [len(t), d] between vectors a and b (linear when parallel)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[:, None]
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(np.clip(a @ b / norms, -1.0, 1.0)) if norms > 0 else 1.0
    omega = np.arccos(cosine)
    if np.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolation_path(a: np.ndarray, b: np.ndarray, steps: int, method: str = "spherical",
                       center: np.ndarray | None = None) -> np.ndarray:
    """``steps`` latent points [steps, d] from a to b, both ends included.

    Args:
        method: ``linear`` (a straight line) or ``spherical`` (a great circle around
            ``center``, which keeps the points at a typical distance from the prior's
            centre instead of cutting through its low-density middle).
        center: the centre of the spherical path (default: the origin).
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"method must be one of {', '.join(INTERPOLATIONS)}, got '{method}'")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if method == "linear":
        return ((1 - t[:, None]) * a + t[:, None] * b).astype(np.float32)
    c = np.zeros_like(a) if center is None else np.asarray(center, dtype=np.float64)
    return (c + slerp(a - c, b - c, t)).astype(np.float32)


def interpolate(model: SelfiesVAE, a: str, b: str, steps: int = 10, method: str = "spherical"
                ) -> pd.DataFrame:
    """Greedy decodings along the path from mu(a) to mu(b): columns step, t, method, smiles.

    The spherical path is centred on the mean of the model's fitted prior (the origin for a
    model without one).
    """
    require_gaussian(model, "interpolation")
    model.check_encodable([a, b])
    mu, _ = model.encode([a, b])
    center = model.latent_mean.detach().float().cpu().numpy()
    z = interpolation_path(mu[0], mu[1], steps, method, center)
    return pd.DataFrame({"method": method, "step": np.arange(steps),
                         "t": np.linspace(0.0, 1.0, steps), "smiles": model.decode(z)})
