"""Random search: z drawn from the prior (or a ball around the start molecule's z), the
baseline every other method has to beat at the same budget."""

from __future__ import annotations

from dataclasses import dataclass

from molvae.optim.search import LatentOptimizer, Problem


@dataclass(frozen=True)
class RandomOptions:
    """Random search has no options of its own: only the shared batch size and radius."""


class RandomSearch(LatentOptimizer):
    """z ~ N(center, scale² I): the prior itself (or a ball around the start)."""

    @classmethod
    def build(cls, problem: Problem, options: RandomOptions) -> RandomSearch:
        scorer = problem.scorer()
        return cls(scorer, problem.empty_start(), problem.batch_size, problem.rng)

    def step(self) -> None:
        noise = self.rng.standard_normal((self.batch_size, self.dim))
        self.scorer.decode_and_score(self.warm.center + self.warm.scale * noise)

    def restart(self) -> None:
        """Nothing to reset: every batch is already a fresh draw."""
