"""The ``fitted`` prior of :class:`~molvae.model.vae.SelfiesVAE`, as a mixin (vae.py stays
about the network).

With the low KL weights that keep a latent space informative, the molecules' codes fill only
part of N(0, I), and sampling where the data lies gives better molecules than the textbook
prior (Ghosh et al. 2020). The model holds the fitted prior in buffers: one Gaussian
(``latent_mean``, ``latent_scale``; N(0, I) until fitted) and, when one was fitted, a mixture
(``mixture_weights``, ``mixture_means``, ``mixture_scales``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

PRIORS = ("fitted", "standard")
# what the fitted prior is; ``learned:K`` is trained in the KL term (molvae.model.mixture_prior)
PRIOR_FITS = ("gaussian", "mixture:K", "posteriors:N[:SPREAD]", "learned:K")


def parse_prior_fit(spec: str) -> tuple[str, int, float]:
    """A fitted-prior spec (one of :data:`PRIOR_FITS`) as (kind, size, spread); a spec that
    is none of them is a ValueError naming the forms."""
    kind, *numbers = spec.split(":")
    try:
        values = [float(x) for x in numbers]
    except ValueError:
        values = []
    arity = {"gaussian": (0,), "mixture": (1,), "posteriors": (1, 2), "learned": (1,)}.get(kind, ())
    if len(numbers) not in arity or len(values) != len(numbers) or \
            not all(np.isfinite(values)) or (values and (values[0] < 1 or values[0] % 1)) or \
            (len(values) == 2 and values[1] <= 0):
        raise ValueError(f"prior fit must be one of {', '.join(PRIOR_FITS)} (K, N whole numbers "
                         f">= 1, SPREAD > 0), got '{spec}'")
    return kind, int(values[0]) if values else 1, values[1] if len(values) == 2 else 1.0


class FittedPriorMixin:
    """``fit_prior`` and ``prior_samples`` for a module with ``latent_dim``, ``device`` and the
    buffers ``latent_mean`` [latent_dim] and ``latent_scale`` [latent_dim, latent_dim] (one
    Gaussian), and ``mixture_weights`` [K], ``mixture_means`` [K, latent_dim] and
    ``mixture_scales`` [K, latent_dim, latent_dim] (a Gaussian mixture; K = 0 when not fitted).

    The fitted prior is a Gaussian mixture when one was fitted, else the single Gaussian: a
    latent space that reconstructs well puts molecules in clusters that one Gaussian covers
    only loosely, and decoding from the gaps between them writes poor molecules. The mixture
    has full covariances (``fit_prior``) or diagonal ones, ``mixture_scales`` [K, latent_dim]
    (``fit_posterior_prior``: the molecules' own posteriors).
    """

    latent_dim: int
    latent_mean: torch.Tensor
    latent_scale: torch.Tensor
    mixture_weights: torch.Tensor
    mixture_means: torch.Tensor
    mixture_scales: torch.Tensor

    if TYPE_CHECKING:  # the model's, declared here for the type checker only
        @property
        def device(self) -> torch.device: ...

        def register_buffer(self, name: str, tensor: torch.Tensor | None,
                            persistent: bool = True) -> None: ...

    def _register_prior_buffers(self) -> None:
        d = self.latent_dim
        self.register_buffer("latent_mean", torch.zeros(d))
        self.register_buffer("latent_scale", torch.eye(d))
        self.resize_mixture(0)

    def resize_mixture(self, components: int, diagonal: bool = False) -> None:
        """Make room for a K-component mixture (loading a model that carries one)."""
        d, device = self.latent_dim, self.latent_mean.device
        self.register_buffer("mixture_weights", torch.zeros(components, device=device))
        self.register_buffer("mixture_means", torch.zeros(components, d, device=device))
        shape = (components, d) if diagonal else (components, d, d)
        self.register_buffer("mixture_scales", torch.zeros(*shape, device=device))

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

    @torch.no_grad()
    def fit_posterior_prior(self, mu: np.ndarray, logvar: np.ndarray, size: int = 4096,
                            spread: float = 1.0, seed: int = 0) -> None:
        """Make the ``fitted`` prior the aggregate posterior of held-out molecules: an equal
        mixture of ``size`` of their posteriors N(mu_i, (spread * sigma_i)^2), a VampPrior
        made of data codes (Tomczak & Welling 2018).

        When the KL weight is low enough for codes to reconstruct, the codes sit apart and no
        simple density covers them; their own posteriors do, by construction. ``spread`` above
        1 reaches further from each molecule: more novel samples, further from the data. The
        single Gaussian (``latent_mean``, ``latent_scale``) is refitted too.
        """
        if spread <= 0 or not np.isfinite(spread):
            raise ValueError(f"spread must be a finite number > 0, got {spread}")
        mu, logvar = np.asarray(mu, dtype=np.float64), np.asarray(logvar, dtype=np.float64)
        keep = np.flatnonzero(np.isfinite(mu).all(axis=1) & np.isfinite(logvar).all(axis=1))
        if len(keep) < 2:
            raise ValueError(f"a posterior prior needs at least 2 molecules, got {len(keep)}")
        self.fit_prior(mu[keep])
        pick = np.random.default_rng(seed).choice(keep, min(size, len(keep)), replace=False)
        self.set_mixture(torch.full((len(pick),), 1.0 / len(pick)), torch.from_numpy(mu[pick]),
                         torch.from_numpy(spread * np.exp(0.5 * logvar[pick])))

    @torch.no_grad()
    def set_mixture(self, weights: torch.Tensor, means: torch.Tensor,
                    scales: torch.Tensor) -> None:
        """Make the ``fitted`` prior this diagonal mixture: ``weights`` [K], ``means`` and
        ``scales`` [K, latent_dim] (a posterior prior's, or one trained in the KL term)."""
        self.resize_mixture(len(weights), diagonal=True)
        self.mixture_weights.copy_(weights)
        self.mixture_means.copy_(means)
        self.mixture_scales.copy_(scales)

    def refit_prior(self, mu: np.ndarray, logvar: np.ndarray, spec: str, seed: int = 0) -> None:
        """Fit the ``fitted`` prior as ``spec`` says (:func:`parse_prior_fit`) to the codes of
        held-out molecules; a mixture never has more components than half the molecules. A
        ``learned`` prior is not fitted here (the training loop hands its mixture to
        :meth:`set_mixture`): only the single Gaussian is refitted."""
        kind, size, spread = parse_prior_fit(spec)
        if kind == "learned":
            mixture = self.mixture_weights, self.mixture_means, self.mixture_scales
            self.fit_prior(mu)
            self.set_mixture(*mixture)
        elif kind == "posteriors":
            self.fit_posterior_prior(mu, logvar, size, spread, seed)
        else:
            self.fit_prior(mu, logvar, min(size, len(mu) // 2) if kind == "mixture" else 1, seed)

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
            scales = self.mixture_scales[pick]
            if scales.ndim == 2:  # diagonal: the molecules' own posteriors
                return self.mixture_means[pick] + scales * eps
            return self.mixture_means[pick] + (scales @ eps.unsqueeze(-1)).squeeze(-1)
        return self.latent_mean + eps @ self.latent_scale.T
