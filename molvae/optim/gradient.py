"""Gradient ascent in the latent space on a differentiable surrogate of the objective."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from molvae.config import option
from molvae.latent.surrogate import (
    SURROGATE_EPOCHS,
    SURROGATE_HIDDEN,
    Surrogate,
    fit_surrogate,
    load_surrogate,
)
from molvae.optim.search import LatentOptimizer, Problem, WarmStart, fill_failures

log = logging.getLogger(__name__)

SURROGATE_MAX_TRAIN = 4000  # warm-start rows a surrogate is fitted on, at most


@dataclass(frozen=True)
class GradientOptions:
    """Options of the ``gradient`` method."""

    prior_weight: float = option(0.05, help="weight of the -||z||^2/2 prior term, which keeps "
                                 "z where the decoder was trained")
    ascent_steps: int = option(40, help="Adam steps per trajectory", bounds="[1, inf)")
    learning_rate: float = option(0.05, help="Adam step size", bounds="(0, inf)")
    refit_every: int = option(4, help="refit the surrogate every N steps", bounds="[1, inf)")
    surrogate_epochs: int = option(SURROGATE_EPOCHS, help="most epochs of a surrogate fit",
                                   bounds="[1, inf)")
    surrogate_hidden: int = option(SURROGATE_HIDDEN, help="hidden width of a fitted surrogate",
                                   bounds="[1, inf)")


def _surrogate_fitter(seed: int, warm: WarmStart, options: GradientOptions
                      ) -> Callable[[np.ndarray, np.ndarray], Surrogate]:
    """Fit a surrogate on observed values plus at most SURROGATE_MAX_TRAIN warm-start rows."""
    rng = np.random.default_rng(seed + 1)
    n_warm = len(warm.y)
    warm_rows = np.sort(rng.choice(n_warm, size=min(n_warm, SURROGATE_MAX_TRAIN), replace=False))

    def fit(z: np.ndarray, y: np.ndarray) -> Surrogate:
        rows = np.concatenate([warm_rows, np.arange(n_warm, len(y))])
        return fit_surrogate(z[rows], fill_failures(y)[rows], seed=seed,
                             epochs=options.surrogate_epochs,
                             hidden_dim=options.surrogate_hidden)

    return fit


class GradientAscent(LatentOptimizer):
    """Gradient ascent on a differentiable surrogate from many starts, LIMO-style.

    Each step climbs ``surrogate(z) - prior_weight * ||z - center||² / 2`` with Adam from the
    best points seen so far (slightly jittered, so repeated starts explore), decodes points
    along every trajectory and scores them with the oracle. The prior term keeps z where the
    decoder was trained. The surrogate is refitted on everything observed every
    ``refit_every`` steps, because a surrogate is most wrong exactly where it is climbed to.
    """

    def __init__(self, *args: Any, options: GradientOptions, surrogate: Surrogate,
                 refit: Callable[[np.ndarray, np.ndarray], Surrogate] | None,
                 sign: float = 1.0, snapshots: int = 8, jitter: float = 0.1,
                 **kwargs: Any) -> None:
        """``surrogate``: what is climbed (``sign`` times it), refitted by ``refit`` on
        everything observed; ``snapshots``: points of each trajectory decoded and scored;
        ``jitter``: noise on the starts, in units of the search's scale."""
        super().__init__(*args, **kwargs)
        self.surrogate, self.refit, self.sign = surrogate, refit, sign
        self.steps, self.lr = options.ascent_steps, options.learning_rate
        self.prior_weight, self.refit_every = options.prior_weight, options.refit_every
        self.snapshots, self.jitter = snapshots, jitter
        self.rounds = 0

    @classmethod
    def build(cls, problem: Problem, options: GradientOptions) -> GradientAscent:
        """Climbs the property regressor of ``problem.regress`` when the objective is one
        property that ``molvae regress`` learnt, else a surrogate fitted on the warm start."""
        scorer = problem.scorer()
        warm = problem.warm_start()
        fit = _surrogate_fitter(problem.seed, warm, options)
        surrogate, sign = None, 1.0
        single = problem.objective.surrogate_property
        if problem.regress is not None and single is not None:
            try:
                surrogate, sign = load_surrogate(problem.regress, single[0]), single[1]
                log.info("gradient: surrogate of %s from %s", single[0], problem.regress)
            except FileNotFoundError as err:
                log.info("gradient: %s; fitting one instead", err)
        if surrogate is None:
            surrogate = fit(warm.z, warm.y)
            log.info("gradient: surrogate fitted on %d points (validation r2 %.2f)",
                     int(surrogate.scores.get("n_train", 0)),
                     surrogate.scores.get("r2", math.nan))
        return cls(scorer, warm, problem.batch_size, problem.rng, options=options,
                   surrogate=surrogate, refit=fit, sign=sign)

    def _starts(self) -> np.ndarray:
        n = max(1, self.batch_size // self.snapshots)
        z_all, y_all = self.scorer.history(self.warm)
        pool = z_all[np.argsort(-fill_failures(y_all), kind="stable")[:4 * n]]
        picked = pool[self.rng.choice(len(pool), size=n, replace=len(pool) < n)]
        return picked + self.jitter * self.warm.scale * self.rng.standard_normal(picked.shape)

    def _climb(self, starts: np.ndarray) -> np.ndarray:
        """Adam ascent; returns ``snapshots`` evenly spaced points of every trajectory."""
        z = torch.tensor(starts, dtype=torch.float32, requires_grad=True)
        center = torch.as_tensor(self.warm.center, dtype=torch.float32)
        optimizer = torch.optim.Adam([z], lr=self.lr)
        keep_at = set(np.linspace(1, self.steps, self.snapshots).round().astype(int).tolist())
        trajectory = []
        for step in range(1, self.steps + 1):
            predicted = self.sign * self.surrogate.standardized(z)
            prior = 0.5 * ((z - center) ** 2).sum(dim=1)
            loss = -(predicted - self.prior_weight * prior).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step in keep_at:
                trajectory.append(z.detach().numpy().copy())
        return np.concatenate(trajectory)

    def step(self) -> None:
        self.surrogate.eval()
        self.scorer.decode_and_score(self._climb(self._starts()))
        self.rounds += 1
        if self.refit is not None and self.rounds % self.refit_every == 0:
            self.surrogate, self.sign = self.refit(*self.scorer.history(self.warm)), 1.0

    def restart(self) -> None:
        """Jitter harder for a while: the best points keep climbing to known molecules."""
        self.jitter = min(2 * self.jitter, 1.0)
