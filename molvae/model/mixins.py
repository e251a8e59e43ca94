"""Two pieces of :class:`~molvae.model.vae.SelfiesVAE`, as mixins (vae.py stays short).

* :class:`FittedPriorMixin`: the ``fitted`` prior, a Gaussian fitted (Ledoit-Wolf) to the
  posterior means of held-out molecules: with the low KL weights that keep a latent space
  informative, the codes fill only part of N(0, I), and sampling where the data lies gives
  better molecules than the textbook prior (Ghosh et al. 2020). The model holds it in the
  buffers ``latent_mean`` and ``latent_scale`` (N(0, I) until fitted).
* :class:`ConditionsMixin`: the condition values c of a conditional model (CVAE), raw values
  standardized with the buffers ``condition_mean`` / ``condition_std``, and appended to the
  network's inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from molvae import chem

PRIORS = ("fitted", "standard")
# raw condition values: [N, C] numbers, or one dict {name: target} for every row
Conditions = np.ndarray | Sequence[Sequence[float]] | dict[str, float] | None


class FittedPriorMixin:
    """``fit_prior`` and ``prior_samples`` for a module with ``latent_dim``, ``device`` and the
    buffers ``latent_mean`` [latent_dim] and ``latent_scale`` [latent_dim, latent_dim] (one
    Gaussian), and ``mixture_weights`` [K], ``mixture_means`` [K, latent_dim] and
    ``mixture_scales`` [K, latent_dim, latent_dim] (a Gaussian mixture; K = 0 when not fitted).

    The fitted prior is a Gaussian mixture when one was fitted, else the single Gaussian: a
    latent space that reconstructs well puts molecules in clusters that one Gaussian covers
    only loosely, and decoding from the gaps between them writes poor molecules.
    """

    latent_dim: int
    latent_mean: torch.Tensor
    latent_scale: torch.Tensor
    mixture_weights: torch.Tensor
    mixture_means: torch.Tensor
    mixture_scales: torch.Tensor

    def _register_prior_buffers(self) -> None:
        d = self.latent_dim
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_scale", torch.eye(d))
        self.resize_mixture(0)

    def resize_mixture(self, components: int) -> None:
        """Make room for a K-component mixture (loading a model that carries one)."""
        d, device = self.latent_dim, self.latent_mean.device
        self.register_buffer("mixture_weights", torch.zeros(components, device=device))
        self.register_buffer("mixture_means", torch.zeros(components, d, device=device))
        self.register_buffer("mixture_scales", torch.zeros(components, d, d, device=device))

    @torch.no_grad()
    def fit_prior(self, mu: np.ndarray, logvar: np.ndarray | None = None, components: int = 1,
                  seed: int = 0) -> None:
        """Fit the ``fitted`` prior to posterior means [N, latent_dim] of held-out molecules.

        With ``components`` = 1 it is one Gaussian (Ledoit-Wolf, well conditioned even with
        fewer molecules than latent dimensions) and any mixture is dropped. With more, a
        Gaussian mixture (full covariances) is fitted to the aggregate posterior: draws
        mu + sigma * eps of each molecule (``logvar`` given) or the means alone.
        """
        from sklearn.covariance import LedoitWolf

        mu = np.asarray(mu, dtype=np.float64)
        keep = np.isfinite(mu).all(axis=1)
        mu = mu[keep]
        if len(mu) < 2:
            return
        estimate = LedoitWolf().fit(mu)
        scale = np.linalg.cholesky(estimate.covariance_ + 1e-6 * np.eye(mu.shape[1]))
        self.latent_mean.copy_(torch.from_numpy(estimate.location_))
        self.latent_scale.copy_(torch.from_numpy(scale))
        if components < 2:
            self.resize_mixture(0)
            return
        if len(mu) < 2 * components:
            raise ValueError(f"a {components}-component prior needs at least {2 * components} "
                             f"molecules, got {len(mu)}")
        from sklearn.mixture import GaussianMixture

        points = mu
        if logvar is not None:
            sigma = np.exp(0.5 * np.asarray(logvar, dtype=np.float64)[keep])
            points = mu + sigma * np.random.default_rng(seed).standard_normal(mu.shape)
        mixture = GaussianMixture(components, covariance_type="full", reg_covar=1e-4,
                                  max_iter=200, random_state=seed).fit(points)
        self.resize_mixture(components)
        self.mixture_weights.copy_(torch.from_numpy(mixture.weights_))
        self.mixture_means.copy_(torch.from_numpy(mixture.means_))
        self.mixture_scales.copy_(torch.from_numpy(np.linalg.cholesky(mixture.covariances_)))

    def prior_samples(self, n: int, prior: str = "fitted",
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latent points [n, latent_dim] from the ``fitted`` or ``standard`` prior."""
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got '{prior}'")
        eps = torch.randn(n, self.latent_dim, device=self.device, generator=generator)
        if prior == "standard":
            return eps
        if len(self.mixture_weights):
            pick = torch.multinomial(self.mixture_weights, n, replacement=True,
                                     generator=generator)
            return self.mixture_means[pick] + (self.mixture_scales[pick]
                                               @ eps.unsqueeze(-1)).squeeze(-1)
        return self.latent_mean + eps @ self.latent_scale.T


class ConditionsMixin:
    """Condition handling for a module with ``config.condition_names``, ``device`` and the
    buffers ``condition_mean`` / ``condition_std`` [C] (training statistics)."""

    condition_mean: torch.Tensor
    condition_std: torch.Tensor

    def _with_conditions(self, x: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """[x ; c] for a conditional model (c standardized, [B, C]); x unchanged otherwise."""
        names = self.config.condition_names
        if not names:
            if conditions is not None:
                raise ValueError("this model was trained without conditions")
            return x
        if conditions is None or tuple(conditions.shape) != (len(x), len(names)):
            raise ValueError(f"this model is conditioned on {', '.join(names)}: conditions must "
                             f"have shape [{len(x)}, {len(names)}], got "
                             f"{None if conditions is None else tuple(conditions.shape)}")
        return torch.cat([x, conditions.to(x.device, x.dtype)], dim=-1)

    def standardize_conditions(self, values: Conditions, n: int) -> torch.Tensor | None:
        """Raw condition values as the standardized tensor [n, C] the network reads.

        ``values``: [n, C] numbers (columns ``config.condition_names``), or one dict
        ``{name: target}`` for all n rows, where names left out take their training mean.
        None for an unconditional model (which accepts no values).
        """
        names = self.config.condition_names
        if not names:
            if values is not None and not (isinstance(values, dict) and not values):
                raise ValueError("this model was trained without conditions")
            return None
        if values is None:
            values = {}
        if isinstance(values, dict):
            unknown = sorted(set(values) - set(names))
            if unknown:
                raise ValueError(f"unknown condition(s) {', '.join(unknown)}: this model is "
                                 f"conditioned on {', '.join(names)}")
            mean = self.condition_mean.cpu().numpy()
            row = [float(values.get(k, mean[i])) for i, k in enumerate(names)]
            values = np.tile(np.asarray(row, dtype=np.float32), (n, 1))
        raw = torch.as_tensor(np.asarray(values, dtype=np.float32), device=self.device)
        if tuple(raw.shape) != (n, len(names)):
            raise ValueError(f"conditions must have shape [{n}, {len(names)}] "
                             f"({', '.join(names)}), got {tuple(raw.shape)}")
        return (raw - self.condition_mean) / self.condition_std

    def molecule_conditions(self, smiles: Sequence[str | None]) -> np.ndarray | None:
        """Raw condition values [N, C] computed from the molecules (None: unconditional)."""
        names = self.config.condition_names
        if not names:
            return None
        rows = [chem.smiles_properties(s) if isinstance(s, str) else {} for s in smiles]
        return np.array([[row.get(k, np.nan) for k in names] for row in rows], dtype=np.float32)
