"""The loop every optimizer runs in, and what the optimizers share.

Each optimizer (one module each: :mod:`~molvae.optim.random_search`, :mod:`~molvae.optim.cmaes`,
:mod:`~molvae.optim.bo`, :mod:`~molvae.optim.gradient`, :mod:`~molvae.optim.policy`; listed in
:mod:`molvae.optim.registry`) is a :class:`LatentOptimizer` stepped by :func:`run_search`:
propose a batch of latent points → decode greedily → score through the
:class:`~molvae.optim.oracle.Oracle` → observe. Greedy decoding makes z → molecule a fixed
function, so an optimizer sees a consistent (if piecewise constant) landscape. The oracle
returns NaN for anything that is not a solution (invalid, failing the guards, too dissimilar
to the start); optimizers treat NaN as worse than anything seen (:func:`fill_failures`), which
steers them away from such regions without inventing a score.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae.model.vae import SelfiesVAE
from molvae.optim.objectives import Objective, score_table
from molvae.optim.oracle import Oracle

log = logging.getLogger(__name__)


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


class LatentScorer:
    """What an optimizer asks of a batch of latent points: decode them greedily and have the
    oracle score the molecules. Every (z, fitness) it has scored is kept, because the methods
    that fit a model of the landscape (BO, the gradient's surrogate) learn from all of them."""

    def __init__(self, model: SelfiesVAE, oracle: Oracle, method: str) -> None:
        self.model, self.oracle, self.method = model, oracle, method
        self.z: list[np.ndarray] = []
        self.y: list[np.ndarray] = []

    def decode(self, z: np.ndarray) -> list[str | None]:
        """The molecules of ``z`` [N, D], greedily (a fixed function of z); not yet scored."""
        return self.model.decode(np.asarray(z, dtype=np.float32))

    def score(self, z: np.ndarray, smiles: Sequence[str | None], source: str = ""
              ) -> np.ndarray:
        """Fitness of already decoded points (and remember them); ``source`` is recorded after
        the method's name for molecules that were not decoded from z (e.g. "crossover")."""
        fitness = self.oracle.query(smiles, f"{self.method}/{source}" if source else self.method)
        self.z.append(np.asarray(z, dtype=np.float32))
        self.y.append(fitness)
        return fitness

    def decode_and_score(self, z: np.ndarray) -> np.ndarray:
        """Fitness of each latent point (NaN: its molecule is no solution)."""
        return self.score(z, self.decode(z))

    def history(self, warm: WarmStart | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Every scored (z, fitness), after the warm-start data when given."""
        zs = ([warm.z] if warm is not None else []) + self.z
        ys = ([warm.y] if warm is not None else []) + self.y
        if not zs:
            return np.empty((0, 0), dtype=np.float32), np.empty(0)
        return np.concatenate(zs), np.concatenate(ys)


@dataclass
class Problem:
    """What every optimizer is built from (see :meth:`LatentOptimizer.build`).

    Attributes:
        model: the model whose latent space (or decoder) is searched.
        objective: what is maximized.
        oracle: who scores, under the budget.
        rng: the run's random generator, drawn from in a fixed order, so a seed repeats a run.
        method: the method's name, recorded with every molecule it proposes.
        batch_size: latent points proposed per step.
        init_size: the initial design scored through the oracle when no labels are free.
        radius: constrained mode: the spread of the search around the start's z.
        seed: the run's seed, for the generators a method keeps of its own.
        train: the training table (prepared data), for free labels and the policy's memory.
        train_z: its latents [N, D] (NaN rows: molecules the model cannot encode).
        start: constrained mode: the molecule to improve (canonical SMILES).
        start_z: its z [D].
        start_record: its oracle record (scored outside the budget).
        regress: a ``molvae regress`` output folder, whose surrogate the gradient method can
            climb instead of fitting one.
    """

    model: SelfiesVAE
    objective: Objective
    oracle: Oracle
    rng: np.random.Generator
    method: str
    batch_size: int
    init_size: int
    radius: float
    seed: int
    train: pd.DataFrame | None = None
    train_z: np.ndarray | None = None
    start: str | None = None
    start_z: np.ndarray | None = None
    start_record: dict[str, Any] | None = None
    regress: Path | None = None

    def scorer(self) -> LatentScorer:
        """Decodes and scores for the method, recording its name with each molecule."""
        return LatentScorer(self.model, self.oracle, self.method)

    def design_size(self) -> int:
        """Molecules of an initial design scored through the oracle: ``init_size``, at most a
        quarter of the budget (at least one), so the search keeps most calls for itself."""
        return max(1, min(self.init_size, self.oracle.budget // 4))

    def empty_start(self) -> WarmStart:
        """Nothing known yet: the search is centred on the prior (or on the start's z, within
        ``radius``); for methods that sample their own first batch."""
        if self.start_z is not None:
            center, scale = self.start_z.astype(float), self.radius
        else:
            center, scale = np.zeros(self.model.latent_dim), 1.0
        return WarmStart(np.empty((0, len(center))), np.empty(0), center, scale)

    def warm_start(self) -> WarmStart:
        """Free training labels when there are any, else an initial design scored by the
        oracle (at most a quarter of the budget): around the start's z in constrained mode,
        else training latents (with prepared data) or prior samples."""
        dim = self.model.latent_dim
        if self.start_z is not None:
            center, scale = self.start_z.astype(float), self.radius
            design = center + scale * self.rng.standard_normal((self.init_size, dim))
            design[0] = center
        else:
            center, scale = np.zeros(dim), 1.0
            labels = score_table(self.objective, self.train) if self.train is not None else None
            if labels is not None and self.train_z is not None:
                usable = np.isfinite(self.train_z).all(axis=1)
                log.info("warm start: %d training molecules with free %s labels", usable.sum(),
                         self.objective.name)
                return WarmStart(self.train_z[usable], labels[usable], center, scale)
            if self.train_z is not None:
                usable = np.flatnonzero(np.isfinite(self.train_z).all(axis=1))
                picked = self.rng.choice(usable, size=min(self.init_size, len(usable)),
                                         replace=False)
                design = self.train_z[picked].astype(float)
            else:
                design = self.rng.standard_normal((self.init_size, dim))
        design = design[:self.design_size()]
        initial = LatentScorer(self.model, self.oracle, f"{self.method}/init")
        return WarmStart(design, initial.decode_and_score(design), center, scale)


class LatentOptimizer(ABC):
    """One optimizer: :meth:`step` proposes one batch, has it decoded and scored, and
    observes the scores.

    A subclass is built by :meth:`build` from a :class:`~molvae.optim.problem.Problem` and its
    own options dataclass (declared in its module, registered in :mod:`molvae.optim.registry`),
    which holds the defaults of the options a user can set.
    """

    def __init__(self, scorer: LatentScorer, warm: WarmStart, batch_size: int,
                 rng: np.random.Generator) -> None:
        self.scorer, self.warm, self.batch_size, self.rng = scorer, warm, batch_size, rng
        self.dim = warm.center.shape[0]

    @classmethod
    @abstractmethod
    def build(cls, problem: Problem, options: Any) -> LatentOptimizer:
        """The optimizer for ``problem``, warm-started as the method needs, with ``options``
        (an instance of the options dataclass the method is registered with)."""

    @abstractmethod
    def step(self) -> None:
        """Propose one batch, have it decoded and scored, update the search state."""

    @abstractmethod
    def restart(self) -> None:
        """Called when several steps in a row found no new molecule (a stuck search)."""


def run_search(optimizer: LatentOptimizer, oracle: Oracle, patience: int = 20) -> str:
    """Step ``optimizer`` until the budget is spent; returns why it stopped.

    A step that finds no new molecule triggers a restart every ``patience // 4`` steps; after
    ``patience`` such steps in a row the search ends early (the oracle's AUC then keeps the
    last value up to the budget, so ending early is never rewarded).
    """
    stale = 0
    with tqdm(total=oracle.budget, desc=f"optimize ({optimizer.scorer.method})",
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
                            optimizer.scorer.method, stale, oracle.calls, oracle.budget)
                return "stalled"
            if stale % max(1, patience // 4) == 0:
                optimizer.restart()
    return "budget"
