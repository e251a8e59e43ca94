"""Latent-space optimizers: random (prior) sampling, CMA-ES, trust-region BO, gradient ascent
(and the shared loop that :mod:`molvae.optim.policy` also runs in).

All four share one loop: propose a batch of latent points → decode greedily → score through
the :class:`~molvae.optim.oracle.Oracle` → observe. Greedy decoding makes z → molecule a fixed
function, so an optimizer sees a consistent (if piecewise constant) landscape. The oracle
returns NaN for anything that is not a solution (invalid, failing the guards, too dissimilar
to the start); optimizers treat NaN as worse than anything seen (:func:`fill_failures`), which
steers them away from such regions without inventing a score.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import cma
import numpy as np
import torch
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from tqdm.auto import tqdm

from molvae.model.vae import SelfiesVAE
from molvae.optim.oracle import Oracle

log = logging.getLogger(__name__)

METHODS = ("policy", "cmaes", "bo", "gradient", "random")  # policy: molvae.optim.policy
ACQUISITIONS = ("ei", "ucb")


def fill_failures(values: np.ndarray) -> np.ndarray:
    """NaN (no solution) replaced by a value below the worst finite one, so it ranks last."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if not len(finite):
        return np.zeros_like(values)
    worst = finite.min() - 0.1 * max(float(np.ptp(finite)), 1e-3)
    return np.where(np.isfinite(values), values, worst)


@dataclass
class WarmStart:
    """What an optimizer knows before it starts.

    Attributes:
        z: [N, D] latent points with known fitness: the training set when its labels are free
            (a property column of the prepared data), else an initial design already scored.
        y: [N] their fitness (NaN: not a solution).
        center: [D] centre of the search: 0 (the prior), or z of the start molecule.
        scale: spread of random proposals around ``center`` (1 = the prior).
    """

    z: np.ndarray
    y: np.ndarray
    center: np.ndarray
    scale: float = 1.0

    def best(self, k: int) -> np.ndarray:
        """The ``k`` best points, best first (points without a solution last)."""
        return self.z[np.argsort(-fill_failures(self.y), kind="stable")[:k]]


class Evaluator:
    """Decode latent points and score them; remembers every (z, fitness) it has seen."""

    def __init__(self, model: SelfiesVAE, oracle: Oracle, method: str) -> None:
        self.model, self.oracle, self.method = model, oracle, method
        self.z: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def decode(self, z: np.ndarray) -> list[str | None]:
        return self.model.decode(np.asarray(z, dtype=np.float32))

    def score(self, z: np.ndarray, smiles: list[str | None], source: str = "") -> np.ndarray:
        """Fitness of already decoded points (and remember them); ``source`` is recorded after
        the method's name for molecules that were not decoded from z (e.g. "crossover")."""
        fitness = self.oracle.evaluate(smiles, f"{self.method}/{source}" if source else
                                       self.method)
        self.z.append(np.asarray(z, dtype=np.float32))
        self.y.append(fitness)
        return fitness

    def __call__(self, z: np.ndarray) -> np.ndarray:
        return self.score(z, self.decode(z))

    def history(self, warm: WarmStart | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every evaluated (z, fitness), after the warm-start data when given."""
        zs = ([warm.z] if warm is not None else []) + self.z
        ys = ([warm.y] if warm is not None else []) + self.y
        if not zs:
            return np.empty((0, 0), dtype=np.float32), np.empty(0)
        return np.concatenate(zs), np.concatenate(ys)


class LatentOptimizer(ABC):
    """One optimizer: :meth:`step` proposes, evaluates and observes one batch."""

    def __init__(self, evaluate: Evaluator, warm: WarmStart, batch_size: int,
                 rng: np.random.Generator) -> None:
        self.evaluate, self.warm, self.batch_size, self.rng = evaluate, warm, batch_size, rng
        self.dim = warm.center.shape[0]

    @abstractmethod
    def step(self) -> None:
        """Propose one batch, evaluate it through the oracle, update the search state."""

    @abstractmethod
    def restart(self) -> None:
        """Called when several steps in a row found no new molecule (a stuck search)."""


class RandomSearch(LatentOptimizer):
    """z ~ N(center, scale² I): the prior itself (or a ball around the start): the baseline."""

    def step(self) -> None:
        noise = self.rng.standard_normal((self.batch_size, self.dim))
        self.evaluate(self.warm.center + self.warm.scale * noise)

    def restart(self) -> None:
        """Nothing to reset: every batch is already a fresh draw."""


class CmaEs(LatentOptimizer):
    """CMA-ES (Hansen's ``cma``) from the best warm-start point; restarts from the next best."""

    def __init__(self, *args: object, sigma: float = 0.5, seed: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.sigma, self.seed, self.restarts = sigma, seed, 0
        self.starts = self.warm.best(16)
        self.strategy = self._strategy(self.starts[0])

    def _strategy(self, mean: np.ndarray) -> cma.CMAEvolutionStrategy:
        options = {"popsize": self.batch_size, "seed": self.seed + self.restarts + 1,
                   "verbose": -9}
        return cma.CMAEvolutionStrategy(np.asarray(mean, dtype=float),
                                        self.sigma * self.warm.scale, options)

    def step(self) -> None:
        population = np.asarray(self.strategy.ask())
        fitness = fill_failures(self.evaluate(population))
        self.strategy.tell(list(population), list(-fitness))  # cma minimizes
        if self.strategy.stop():
            self.restart()

    def restart(self) -> None:
        self.restarts += 1
        self.strategy = self._strategy(self.starts[self.restarts % len(self.starts)])


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

    def __init__(self, *args: object, acquisition: str = "ei", length: float = 0.8,
                 min_length: float = 0.02, max_length: float = 3.2, gp_points: int = 256,
                 candidates: int = 2000, seed: int = 0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.acquisition, self.seed = acquisition, seed
        self.initial_length, self.min_length, self.max_length = length, min_length, max_length
        self.gp_points, self.n_candidates = gp_points, candidates
        self.success_tolerance, self.failure_tolerance = 3, max(4, self.dim // self.batch_size)
        self.starts, self.restarts = self.warm.best(16), 0
        self._reset(self.starts[0])

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
        z_all, y_all = self.evaluate.history(self.warm)
        y_all = fill_failures(y_all)
        if self.best == -np.inf:  # first step after a (re)start: incumbent is the centre
            self.best = float(y_all[np.argmin(np.linalg.norm(z_all - self.center, axis=1))])
        nearest = np.argsort(np.linalg.norm(z_all - self.center, axis=1))[:self.gp_points]
        gp = self._fit(z_all[nearest], y_all[nearest])
        candidates = self._candidates()
        order = np.argsort(-self._score(gp, candidates, float(y_all[nearest].max())))
        shortlist = candidates[order[:4 * self.batch_size]]
        smiles = self.evaluate.decode(shortlist)
        chosen, seen = [], set(self.evaluate.oracle.records)
        for i, text in enumerate(smiles):
            if text and text not in seen and len(chosen) < self.batch_size:
                chosen.append(i)
                seen.add(text)
        if not chosen:
            self._record(-np.inf, None)
            return
        fitness = self.evaluate.score(shortlist[chosen], [smiles[i] for i in chosen])
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


class GradientAscent(LatentOptimizer):
    """Gradient ascent on a differentiable surrogate from many starts, LIMO-style.

    Each step climbs ``surrogate(z) - prior_weight * ||z - center||² / 2`` with Adam from the
    best points seen so far (slightly jittered, so repeated starts explore), decodes points
    along every trajectory and scores them with the oracle. The prior term keeps z where the
    decoder was trained. The surrogate is refitted on everything observed every
    ``refit_every`` steps, because a surrogate is most wrong exactly where it is climbed to.
    """

    def __init__(self, *args: object, surrogate: torch.nn.Module,
                 refit: Callable[[np.ndarray, np.ndarray], torch.nn.Module] | None,
                 sign: float = 1.0, steps: int = 40, lr: float = 0.05,
                 prior_weight: float = 0.05, snapshots: int = 8, refit_every: int = 4,
                 jitter: float = 0.1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.surrogate, self.refit, self.sign = surrogate, refit, sign
        self.steps, self.lr, self.prior_weight = steps, lr, prior_weight
        self.snapshots, self.refit_every, self.jitter = snapshots, refit_every, jitter
        self.rounds = 0

    def _starts(self) -> np.ndarray:
        n = max(1, self.batch_size // self.snapshots)
        z_all, y_all = self.evaluate.history(self.warm)
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
        self.evaluate(self._climb(self._starts()))
        self.rounds += 1
        if self.refit is not None and self.rounds % self.refit_every == 0:
            self.surrogate, self.sign = self.refit(*self.evaluate.history(self.warm)), 1.0

    def restart(self) -> None:
        """Jitter harder for a while: the best points keep climbing to known molecules."""
        self.jitter = min(2 * self.jitter, 1.0)


def run_search(optimizer: LatentOptimizer, oracle: Oracle, patience: int = 20) -> str:
    """Step ``optimizer`` until the budget is spent; returns why it stopped.

    A step that finds no new molecule triggers a restart every ``patience // 4`` steps; after
    ``patience`` such steps in a row the search ends early (the oracle's AUC then keeps the
    last value up to the budget, so ending early is never rewarded).
    """
    stale = 0
    with tqdm(total=oracle.budget, desc=f"optimize ({optimizer.evaluate.method})",
              unit="call") as bar:
        while not oracle.exhausted:
            before = oracle.calls
            optimizer.step()
            bar.update(oracle.calls - before)
            if oracle.calls > before:
                stale = 0
                continue
            stale += 1
            if stale >= patience:
                log.warning("%s: no new molecules in %d steps; stopping at %d of %d calls",
                            optimizer.evaluate.method, stale, oracle.calls, oracle.budget)
                return "stalled"
            if stale % max(1, patience // 4) == 0:
                optimizer.restart()
    return "budget"
