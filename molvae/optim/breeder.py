"""The policy's genetic half: the scored molecules as a population, Graph GA offspring of its
best (Jensen 2019, through ``mol_ga``), and the screen that spends calls only on the children a
surrogate rates best.

Why a screen: children resemble their parents, so the molecules already scored are a free
surrogate of the oracle, and breeding more children than are scored costs no calls.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Sequence
from itertools import islice
from random import Random

import numpy as np
from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
from mol_ga.sample_population import uniform_quantile_sampling

from molvae import chem
from molvae.optim.tanimoto_gp import TanimotoGP

SURROGATES = ("gp", "gp-descriptors", "neighbours")


class Breeder:
    """A population of scored molecules and the screened offspring of its best.

    Args:
        size: best molecules bred from.
        mutation: share of the children made by mutating one parent; the rest by crossover.
        screen: children bred per child kept; above 1 the surrogate picks those kept.
        surrogate: what rates the children (one of ``SURROGATES``).
        seed: seeds the choice of parents and the operators.
        max_heavy_atoms: the largest molecule worth a call. Graph GA's crossover joins
            fragments of two parents with no bound on size (``mol_ga`` drops the original's
            size prior), so on an objective that does not punish size a population can grow
            into molecules of hundreds of atoms, which no one would make and which take
            seconds each to breed and to score.
    """

    def __init__(self, size: int, mutation: float, screen: int, surrogate: str,
                 seed: int, max_heavy_atoms: int | None = None) -> None:
        self.size, self.mutation, self.screen = size, mutation, screen
        self.max_heavy_atoms = max_heavy_atoms
        self.scores: dict[str, float] = {}  # every molecule with a score: the parents
        self.surrogate = chem.NeighbourScores() if surrogate == "neighbours" else \
            TanimotoGP(descriptors=surrogate == "gp-descriptors")
        self.rng = Random(seed)

    def add(self, smiles: Sequence[str | None], scores: np.ndarray) -> None:
        """Add scored molecules to the population (the best are kept) and to the surrogate."""
        for text, score in zip(smiles, scores, strict=True):
            if text and np.isfinite(score):
                self.scores[text] = float(score)
        if self.screen > 1:
            self.surrogate.add(smiles, scores)
        if len(self.scores) > 2 * self.size:
            self.scores = dict(heapq.nlargest(self.size, self.scores.items(),
                                              key=lambda item: item[1]))

    def bar(self, rank: int) -> float:
        """The ``rank``-th best score so far (-inf while fewer are known)."""
        best = heapq.nlargest(rank, self.scores.values())
        return best[-1] if len(best) == rank else -np.inf

    def children(self, n: int, known: Container[str], mutation: float | None = None
                 ) -> list[str]:
        """Up to ``n`` molecules not in ``known``, by crossover and mutation of the best, in
        random order; ``mutation`` (default: the breeder's) of them by mutation alone."""
        if n < 1 or len(self.scores) < 2:
            return []
        best = heapq.nlargest(self.size, self.scores.items(), key=lambda item: item[1])
        population = [(score, text) for text, score in best]
        fresh: set[str] = set()
        for _ in range(3):  # a converged population mostly rebreeds known molecules
            parents = uniform_quantile_sampling(population, 2 * n, self.rng)
            children = graph_ga_blended_generation(
                parents, n, self.rng,
                frac_graph_ga_mutate=self.mutation if mutation is None else mutation)
            fresh |= {child for child in children if child not in known}
            if len(fresh) >= n:
                break
        new = sorted(fresh)  # sets have no order
        self.rng.shuffle(new)
        return new

    def screened(self, candidates: list[str], n: int) -> list[int]:
        """The ``n`` candidates worth a call (their indices): those the surrogate rates best
        when there are more than ``n`` and a screen, else the first ``n``; one above
        ``max_heavy_atoms`` gives its place to the next."""
        order = np.arange(len(candidates))
        if self.screen > 1 and len(candidates) > n:
            predicted = np.nan_to_num(self.surrogate.predict(candidates), nan=-np.inf)
            order = np.argsort(-predicted, kind="stable")
        limit = self.max_heavy_atoms
        fitting = (i for i in order.tolist()
                   if limit is None or chem.heavy_atom_count(candidates[i]) <= limit)
        return list(islice(fitting, n))
