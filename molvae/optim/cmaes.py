"""CMA-ES in the latent space (Hansen's ``cma``), from the best warm-start point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cma
import numpy as np

from molvae.config import option
from molvae.optim.search import LatentOptimizer, Problem, fill_failures


@dataclass(frozen=True)
class CmaEsOptions:
    """Options of the ``cmaes`` method."""

    sigma: float = option(0.5, help="initial step size, in units of the search's scale (the "
                          "prior's, or --radius around --start)", bounds="(0, inf)")


class CmaEs(LatentOptimizer):
    """CMA-ES from the best warm-start point; when it converges (or stalls) it restarts from
    the next best of the 16 best warm-start points."""

    def __init__(self, *args: Any, options: CmaEsOptions, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sigma, self.seed, self.restarts = options.sigma, seed, 0
        self.starts = self.warm.best(16)
        self.strategy = self._strategy(self.starts[0])

    @classmethod
    def build(cls, problem: Problem, options: CmaEsOptions) -> CmaEs:
        scorer = problem.scorer()
        return cls(scorer, problem.warm_start(), problem.batch_size, problem.rng,
                   options=options, seed=problem.seed)

    def _strategy(self, mean: np.ndarray) -> cma.CMAEvolutionStrategy:
        options = {"popsize": self.batch_size, "seed": self.seed + self.restarts + 1,
                   "verbose": -9}
        return cma.CMAEvolutionStrategy(np.asarray(mean, dtype=float),
                                        self.sigma * self.warm.scale, options)

    def step(self) -> None:
        population = np.asarray(self.strategy.ask())
        fitness = fill_failures(self.scorer.decode_and_score(population))
        self.strategy.tell(list(population), list(-fitness))  # cma minimizes
        if self.strategy.stop():
            self.restart()

    def restart(self) -> None:
        self.restarts += 1
        self.strategy = self._strategy(self.starts[self.restarts % len(self.starts)])
