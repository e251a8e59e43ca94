"""Batch Bayesian optimization in a trust region of the latent space (TuRBO-1 style)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from molvae.config import option
from molvae.optim.search import LatentOptimizer, Problem, fill_failures

ACQUISITIONS = ("ei", "ucb")


@dataclass(frozen=True)
class BOOptions:
    """Options of the ``bo`` method."""

    acquisition: str = option("ei", help=f"acquisition function, {' or '.join(ACQUISITIONS)} "
                              "(expected improvement or upper confidence bound)",
                              choices=ACQUISITIONS)
    trust_length: float = option(0.8, help="initial side length of the trust region, in units "
                                 "of the search's scale", bounds="(0, inf)")


class TrustRegionBO(LatentOptimizer):
    """Batch Bayesian optimization in a trust region around the incumbent (TuRBO-1 style).

    Why a trust region: with 32-128 latent dimensions and hundreds of points, a global GP is
    nearly flat and its acquisition maximum sits far out where the decoder was never trained.
    A local GP (the points nearest the incumbent) in a box that grows after successes and
    shrinks after failures (Eriksson et al. 2019) keeps proposals near decodable, good points;
    a PCA subspace would instead fix the directions before knowing which ones matter.

    Batch choice: acquisition (EI or UCB) on random candidates in the box, then the best ones
    that decode to distinct, not yet scored molecules, so no batch slot is spent on a repeat.
    """

    def __init__(self, *args: Any, options: BOOptions, seed: int = 0,
                 min_length: float = 0.02, max_length: float = 3.2, gp_points: int = 256,
                 candidates: int = 2000, **kwargs: Any) -> None:
        """``min_length`` .. ``max_length``: the trust region's side (a restart below the
        least); ``gp_points``: nearest points the local GP is fitted on; ``candidates``: random
        points the acquisition is evaluated on per step."""
        super().__init__(*args, **kwargs)
        self.acquisition, self.seed = options.acquisition, seed
        self.initial_length = options.trust_length
        self.min_length, self.max_length = min_length, max_length
        self.gp_points, self.n_candidates = gp_points, candidates
        self.success_tolerance, self.failure_tolerance = 3, max(4, self.dim // self.batch_size)
        self.starts, self.restarts = self.warm.best(16), 0
        self._reset(self.starts[0])

    @classmethod
    def build(cls, problem: Problem, options: BOOptions) -> TrustRegionBO:
        scorer = problem.scorer()
        return cls(scorer, problem.warm_start(), problem.batch_size, problem.rng,
                   options=options, seed=problem.seed)

    def _reset(self, center: np.ndarray) -> None:
        self.center = np.asarray(center, dtype=float)
        self.length = self.initial_length * self.warm.scale
        self.successes = self.failures = 0
        self.best = -np.inf

    def _fit(self, z: np.ndarray, y: np.ndarray) -> GaussianProcessRegressor:
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(1.0, (1e-2, 1e2), nu=2.5) \
            + WhiteKernel(1e-2, (1e-6, 1.0))
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return gp.fit(z, y)

    def _candidates(self) -> np.ndarray:
        """Uniform points in the box; each perturbs only some coordinates of the centre, which
        TuRBO found to work better in high dimension than moving all of them."""
        n, d = self.n_candidates, self.dim
        box = self.center + self.length / 2 * self.rng.uniform(-1, 1, (n, d))
        mask = self.rng.random((n, d)) < min(1.0, 20 / d)
        mask[np.arange(n), self.rng.integers(0, d, n)] = True
        return np.where(mask, box, self.center)

    def _score(self, gp: GaussianProcessRegressor, z: np.ndarray, best: float) -> np.ndarray:
        mean, std = gp.predict(z, return_std=True)
        if self.acquisition == "ucb":
            return mean + 2.0 * std
        std = np.maximum(std, 1e-9)
        improvement = (mean - best) / std
        return (mean - best) * norm.cdf(improvement) + std * norm.pdf(improvement)

    def step(self) -> None:
        z_all, y_all = self.scorer.history(self.warm)
        y_all = fill_failures(y_all)
        if self.best == -np.inf:  # first step after a (re)start: incumbent is the centre
            self.best = float(y_all[np.argmin(np.linalg.norm(z_all - self.center, axis=1))])
        nearest = np.argsort(np.linalg.norm(z_all - self.center, axis=1))[:self.gp_points]
        gp = self._fit(z_all[nearest], y_all[nearest])
        candidates = self._candidates()
        order = np.argsort(-self._score(gp, candidates, float(y_all[nearest].max())))
        shortlist = candidates[order[:4 * self.batch_size]]
        smiles = self.scorer.decode(shortlist)
        chosen: list[int] = []
        seen = set(self.scorer.oracle.records)
        for i, text in enumerate(smiles):
            if text and text not in seen and len(chosen) < self.batch_size:
                chosen.append(i)
                seen.add(text)
        if not chosen:
            self._record(-np.inf, None)
            return
        fitness = self.scorer.score(shortlist[chosen], [smiles[i] for i in chosen])
        if np.isnan(fitness).all():
            self._record(-np.inf, None)
            return
        top = int(np.nanargmax(fitness))
        self._record(float(fitness[top]), shortlist[chosen][top])

    def _record(self, value: float, point: np.ndarray | None) -> None:
        """TuRBO's bookkeeping: grow the box after successes, shrink it after failures."""
        if point is not None and value > self.best + 1e-3 * abs(self.best):
            self.best, self.center = value, point
            self.successes, self.failures = self.successes + 1, 0
        else:
            self.successes, self.failures = 0, self.failures + 1
        if self.successes >= self.success_tolerance:
            self.length, self.successes = min(2 * self.length, self.max_length), 0
        if self.failures >= self.failure_tolerance:
            self.length, self.failures = self.length / 2, 0
        if self.length < self.min_length:
            self.restart()

    def restart(self) -> None:
        self.restarts += 1
        self._reset(self.starts[self.restarts % len(self.starts)])
