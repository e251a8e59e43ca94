"""The decoder as a policy: fine-tune a copy of the model toward high scores, z as its input.

Why: the latent optimizers (CMA-ES, BO, gradient, random) move a point through a fixed decoder,
so they only reach what that decoder already writes well. This method moves the generator
itself, with the recipe that makes REINVENT strong on the PMO benchmark (Olivecrona et al.
2017; Gao et al. 2022), in its hill-climbing form (Thomas et al. 2022), plus what a decoder
conditioned on z allows and an unconditional language model does not:

* an *agent*, a copy of the trained model, writes its part of each batch by sampling tokens
  from its decoder. Most of that part (``local``) is written from z near the z of a
  remembered good molecule, drawn by rank, so each is a variation of a good molecule (the
  mutation of a genetic algorithm, in latent space); the rest comes from the model's fitted
  prior, which keeps exploring. The agent learning alone barely climbs, because what it
  learns for one z hardly moves what it writes for another; sampling near good z alone climbs
  slowly; together they climb fast;
* each molecule's score is mapped to [0, 1] by the range of scores seen so far (anything that
  is not a solution counts 0), so one ``sigma`` suits objectives of any scale;
* the agent's log-likelihood log π(x | z) is pulled toward the *augmented likelihood*
  log p(x | z) + σ·score of the frozen pretrained decoder p: the pull toward high scores is
  anchored to the chemistry the model learned, which keeps the molecules valid and drug-like
  instead of collapsing onto degenerate strings;
* only the best ``top_fraction`` of each batch enters the loss (a poor molecule teaches the
  agent little but still costs likelihood), and a memory of the best molecules seen, with the
  z they were written from, is replayed at every update; ``updates`` > 1 learns more from the
  memory per oracle call, as augmented memory does (Guo & Schwaller 2023);
* the rest of each batch (``crossover``) is bred from the best molecules seen by Graph GA
  crossover and mutation (Jensen 2019, through ``mol_ga``), as Genetic GFN does (Kim et al.
  2024): the graph operators reach molecules the decoder rarely writes, and the agent learns
  from the offspring it can write (z their encoding), so what the GA finds pulls the decoder
  along, past the plateau the decoder alone reaches;
* the GA breeds ``screen`` times more new children than it scores and spends the calls on
  those a surrogate fitted to every scored molecule rates best (a Gaussian process's upper
  confidence bound, :class:`~molvae.optim.tanimoto_gp.TanimotoGP`, by default on Morgan bits
  and on the descriptors design objectives weigh, or the scores of the nearest scored
  molecules, :class:`molvae.chem.NeighbourScores`): children resemble their parents, so the
  molecules already scored are a free surrogate.

With a prepared data set the memory starts from scored training molecules (free labels when
the objective is a property column, else a random sample scored through the oracle); without
one, from ``init_size`` molecules the model writes from its fitted prior, scored, so the
default needs nothing but the model.
Repeats are free in the oracle, so a batch that rewrites known molecules costs no calls; a
search that keeps doing so is restarted from the pretrained weights (the memory stays).
"""

from __future__ import annotations

import copy
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

import numpy as np
import torch
from mol_ga.graph_ga.gen_candidates import graph_ga_blended_generation
from mol_ga.sample_population import uniform_quantile_sampling

from molvae import chem
from molvae.config import option
from molvae.data.tokens import tokenize
from molvae.model.likelihood import sampled_log_likelihood
from molvae.optim.memory import Memory, pad_rows, trim
from molvae.optim.objectives import score_table
from molvae.optim.search import LatentOptimizer, LatentScorer, Problem, fill_failures
from molvae.optim.tanimoto_gp import TanimotoGP

MEMORY_SIZE = 100  # best molecules kept for replay
SURROGATES = ("gp", "gp-descriptors", "neighbours")


@dataclass(frozen=True)
class PolicyOptions:
    """Options of the ``policy`` method (see the module docstring for what each part does)."""

    sigma: float = option(500.0, help="weight of the [0, 1]-scaled score in the augmented "
                          "likelihood (REINVENT's sigma)", bounds="(0, inf)")
    learning_rate: float = option(5e-3, help="Adam step size of the agent", bounds="(0, inf)")
    top_fraction: float = option(0.5, help="best share of each batch that trains the agent",
                                 bounds="(0, 1]")
    replay: int = option(64, help="best molecules so far replayed each step", bounds="[0, inf)")
    local: float = option(0.9, help="share of the agent's molecules written near the best "
                          "molecules so far (their z plus noise); the rest from the prior",
                          bounds="[0, 1]")
    radius: float = option(0.1, help="spread of z around the best molecules, in units of the "
                           "prior's", bounds="(0, inf)")
    temperature: float = option(1.0, help="sampling temperature of the agent (lower keeps "
                                "constrained searches nearer the start)", bounds="(0, inf)")
    updates: int = option(2, help="agent updates per batch (the extra ones replay the memory)",
                          bounds="[1, inf)")
    crossover: float = option(0.9, help="share of each batch bred by Graph GA crossover and "
                              "mutation of the best molecules so far", bounds="[0, 1)")
    population: int = option(500, help="best molecules the GA breeds from", bounds="[1, inf)")
    mutation: float = option(0.1, help="share of the GA's children made by mutating one parent "
                             "(small edits); the rest by crossover of two", bounds="[0, 1]")
    screen: int = option(3, help="GA children bred per child scored; above 1 only those the "
                         "surrogate rates best are scored", bounds="[1, inf)")
    surrogate: str = option("gp-descriptors", help="what rates the GA's children: "
                            "gp-descriptors (a Gaussian process, upper confidence bound, with "
                            "the Tanimoto kernel on Morgan bits times a kernel on logP, TPSA "
                            "and other descriptors), gp (the Tanimoto kernel alone) or "
                            "neighbours (the scores of the most similar scored molecules)",
                            choices=SURROGATES)
    pooled: bool = option(False, help="the agent writes screen times its share of each batch "
                          "too, and one screen picks the batch from its molecules and the GA's "
                          "children together, so the surrogate sets the mix of the two")


def _joined(written: tuple[Sequence[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]],
            bred: tuple[list[str], np.ndarray, torch.Tensor, list[torch.Tensor]]
            ) -> tuple[list[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]]:
    """The agent's scored molecules, then the GA's, as one batch: (SMILES, scores, z, token
    rows)."""
    return ([*written[0], *bred[0]], np.concatenate([written[1], bred[1]]),
            torch.cat([written[2], bred[2]]), [*written[3], *bred[3]])


def training_examples(problem: Problem) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Training molecules with scores, for the policy's memory: the best of the free labels
    when there are any, else ``init_size`` random ones scored by the oracle (calls spent).

    Returns:
        (SMILES, scores, z), z the molecules' encodings.
    """
    assert problem.train is not None and problem.train_z is not None
    usable = np.flatnonzero(np.isfinite(problem.train_z).all(axis=1))
    labels = score_table(problem.objective, problem.train)
    if labels is not None:
        picked = usable[np.argsort(-fill_failures(labels[usable]), kind="stable")[:1000]]
    else:
        size = min(problem.design_size(), len(usable))
        picked = problem.rng.choice(usable, size=size, replace=False)
    smiles = problem.train["smiles"].iloc[picked].tolist()
    scores = labels[picked] if labels is not None else LatentScorer(
        problem.model, problem.oracle, "policy/init").score(problem.train_z[picked], smiles)
    return smiles, scores, problem.train_z[picked]


class PolicySearch(LatentOptimizer):
    """The model's decoder fine-tuned as a policy; see the module docstring.

    Args:
        options: what the user may tune (:class:`PolicyOptions`).
        constrained: draw z around ``warm.center`` (the start molecule), not from the prior.
        seed: seeds the agent's sampling and the GA.
        memory_size: best molecules kept for replay.
    """

    def __init__(self, *args: Any, options: PolicyOptions, constrained: bool = False,
                 seed: int = 0, memory_size: int = MEMORY_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.constrained, self.updates = constrained, options.updates
        self.local, self.radius = options.local, options.radius
        self.sigma, self.learning_rate = options.sigma, options.learning_rate
        self.temperature = options.temperature
        self.top_fraction, self.replay = options.top_fraction, options.replay
        self.prior = self.scorer.model
        self.memory = Memory(memory_size)
        self.crossover, self.population_size = options.crossover, options.population
        self.mutation = options.mutation
        self.population: dict[str, float] = {}  # every molecule with a score: the GA's parents
        self.screen, self.pooled = options.screen, options.pooled
        self.surrogate = chem.NeighbourScores() if options.surrogate == "neighbours" else \
            TanimotoGP(descriptors=options.surrogate == "gp-descriptors")
        self.ga_rng = Random(seed)
        self.generator = torch.Generator(device=self.prior.device).manual_seed(seed)
        self.low, self.high = np.inf, -np.inf  # range of the scores seen
        self.restart()

    @classmethod
    def build(cls, problem: Problem, options: PolicyOptions) -> PolicySearch:
        """The policy, its memory started from the start molecule (constrained mode) or from
        scored training molecules (with prepared data)."""
        scorer = problem.scorer()
        policy = cls(scorer, problem.empty_start(), problem.batch_size, problem.rng,
                     options=options, constrained=problem.start_z is not None,
                     seed=problem.seed)
        if problem.start_record is not None and problem.start_z is not None:
            policy.remember([str(problem.start)], np.array([problem.start_record["score"]]),
                            problem.start_z[None])
        elif problem.train_z is not None:
            policy.remember(*training_examples(problem))
        else:
            policy.first_design(problem.design_size())
        return policy

    def first_design(self, n: int) -> None:
        """Start the memory and the GA's population from ``n`` molecules the model writes
        from its fitted prior, scored (calls spent): with no data, what the model learned is
        the best guess of where good molecules are."""
        smiles, scores, z, rows = self._written(n, source="init")
        self._breed_from(smiles, scores)
        self.memory.add(smiles, scores, z, rows)
        self._observe_range(scores)

    def remember(self, smiles: list[str], scores: np.ndarray, z: np.ndarray) -> None:
        """Put known molecules (e.g. scored training molecules, z their encodings) in the
        memory, so the agent learns from the best of them from its first step; those the
        model's vocabulary cannot write are left out."""
        self._breed_from(smiles, scores)
        usable, rows = self._writable(smiles)
        if usable:
            device = self.prior.device
            self.memory.add([smiles[i] for i in usable], np.asarray(scores)[usable],
                            torch.as_tensor(np.asarray(z, dtype=np.float32)[usable],
                                            device=device), rows)

    def _writable(self, smiles: list[str]) -> tuple[list[int], list[torch.Tensor]]:
        """The molecules the model's vocabulary can write (their indices) and their token rows."""
        ids = tokenize(self.prior.vocab, smiles).ids
        usable = [i for i, row in enumerate(ids)
                  if row is not None and len(row) <= self.prior.vocab.max_length + 2]
        return usable, [torch.tensor(ids[i], device=self.prior.device) for i in usable]

    def _breed_from(self, smiles: Sequence[str | None], scores: np.ndarray) -> None:
        """Add scored molecules to the genetic algorithm's population (the best are kept)."""
        for text, score in zip(smiles, scores, strict=True):
            if text and np.isfinite(score):
                self.population[text] = float(score)
        if self.screen > 1:
            self.surrogate.add(smiles, scores)
        if len(self.population) > 2 * self.population_size:
            self.population = dict(heapq.nlargest(self.population_size,
                                                  self.population.items(),
                                                  key=lambda item: item[1]))

    def _children(self, n: int) -> list[str]:
        """Up to ``n`` new molecules by Graph GA crossover and mutation of the population, in
        random order."""
        if n < 1 or len(self.population) < 2:
            return []
        best = heapq.nlargest(self.population_size, self.population.items(),
                              key=lambda item: item[1])
        population = [(score, text) for text, score in best]
        known = self.scorer.oracle.records
        fresh: set[str] = set()
        for _ in range(3):  # a converged population mostly rebreeds known molecules
            parents = uniform_quantile_sampling(population, 2 * n, self.ga_rng)
            children = graph_ga_blended_generation(parents, n, self.ga_rng,
                                                   frac_graph_ga_mutate=self.mutation)
            fresh |= {child for child in children if child not in known}
            if len(fresh) >= n:
                break
        new = sorted(fresh)  # sets have no order
        self.ga_rng.shuffle(new)
        return new

    def _screened(self, candidates: list[str], n: int) -> list[int]:
        """The ``n`` candidates worth a call (their indices): those the surrogate rates best
        when there are more than ``n`` and a screen, else the first ``n``."""
        order = np.arange(len(candidates))
        if self.screen > 1 and len(candidates) > n:
            predicted = np.nan_to_num(self.surrogate.predict(candidates), nan=-np.inf)
            order = np.argsort(-predicted, kind="stable")
        return order[:n].tolist()

    def restart(self) -> None:
        """A fresh agent from the pretrained weights (the memory is kept)."""
        self.agent = copy.deepcopy(self.prior).float().eval()
        for parameter in self.agent.parameters():
            parameter.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=self.learning_rate)

    def _latents(self, n: int) -> torch.Tensor:
        """z for a batch: ``local`` of it near remembered molecules, the rest from the prior
        (around the start molecule in constrained mode)."""
        device = self.prior.device
        eps = torch.randn(n, self.dim, generator=self.generator, device=device)
        if self.constrained:
            center = torch.as_tensor(self.warm.center, dtype=torch.float32, device=device)
            z = center + self.warm.scale * eps
        else:
            z = self.prior.prior_samples(n, generator=self.generator)
        near = min(n, int(round(self.local * n))) if len(self.memory) else 0
        if near:
            _, centers, _ = self.memory.sample(near, self.rng, by_rank=True)
            z[:near] = centers + self.radius * (eps[:near] @ self.prior.latent_scale.T)
        return z

    def _observe_range(self, scores: np.ndarray) -> None:
        """Widen the range of scores seen by a new batch's (NaN, no solution, ignored)."""
        finite = scores[np.isfinite(scores)]
        if len(finite):
            self.low, self.high = min(self.low, finite.min()), max(self.high, finite.max())

    def _scaled(self, scores: np.ndarray) -> np.ndarray:
        """Scores mapped to [0, 1] by the range seen so far; no solution counts 0."""
        span = self.high - self.low
        scaled = (scores - self.low) / span if span > 0 else np.ones_like(scores)
        return np.where(np.isfinite(scores), np.clip(scaled, 0.0, 1.0), 0.0)

    def _write(self, n: int) -> tuple[list[str | None], torch.Tensor, list[torch.Tensor]]:
        """``n`` molecules written by the agent: (SMILES, z, token rows)."""
        vocab = self.agent.vocab
        with torch.no_grad():
            z = self._latents(n)
            ids = self.agent.decode_ids(z, greedy=False, temperature=self.temperature,
                                        generator=self.generator)
        smiles = [vocab.to_smiles(row) for row in ids.tolist()]
        bos = torch.full((len(ids), 1), vocab.bos_id, dtype=ids.dtype, device=ids.device)
        return smiles, z, trim(torch.cat([bos, ids], dim=1), vocab.pad_id)

    def _written(self, n: int, source: str = ""
                 ) -> tuple[list[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """``n`` molecules written by the agent, scored: (SMILES, scores, z, token rows);
        ``source`` is recorded with them (see :meth:`LatentScorer.score`)."""
        smiles, z, rows = self._write(n)
        scores = self.scorer.score(z.cpu().numpy(), smiles, source=source)
        return smiles, scores, z, rows

    def _bred(self, n: int) -> tuple[list[str], np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """Up to ``n`` GA offspring, screened and scored (see :meth:`_bred_scored`)."""
        children = self._children(n * self.screen)
        return self._bred_scored([children[i] for i in self._screened(children, n)])

    def _bred_scored(self, children: list[str]
                     ) -> tuple[list[str], np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """GA offspring, scored; those the model can write come back with their encodings as
        z and their token rows, so the agent learns from them too."""
        if not children:
            return [], np.empty(0), torch.empty(0, self.dim, device=self.prior.device), []
        mu = self.prior.encode(children)[0]
        scores = self.scorer.score(mu, children, source="crossover")
        self._breed_from(children, scores)
        usable, rows = self._writable(children)
        z = torch.as_tensor(mu[usable], device=self.prior.device)
        return [children[i] for i in usable], scores[usable], z, rows

    def _mixed(self) -> tuple[list[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """A batch of the agent's writes and ``crossover`` of it GA offspring, scored."""
        n_bred = int(round(self.crossover * self.batch_size))
        smiles, scores, z, rows = self._written(self.batch_size - n_bred)
        self._breed_from(smiles, scores)
        return _joined((smiles, scores, z, rows), self._bred(n_bred))

    def _pooled(self) -> tuple[list[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]]:
        """A batch the screen picks from the agent's new molecules and the GA's children
        together (``screen`` times the batch, ``crossover`` of them bred), scored."""
        wanted = self.batch_size * self.screen
        n_bred = int(round(self.crossover * wanted))
        written, z, rows = self._write(wanted - n_bred)
        oracle = self.scorer.oracle
        first: dict[str, int] = {}  # each new molecule -> where the agent first wrote it
        for i, text in enumerate(written):
            key = oracle.key(text)
            if key is not None and key not in oracle.records:
                first.setdefault(key, i)
        candidates = [*first, *(c for c in self._children(n_bred) if c not in first)]
        picked = self._screened(candidates, self.batch_size)
        mine = [candidates[i] for i in picked if i < len(first)]
        index = [first[key] for key in mine]
        scores = self.scorer.score(z[index].cpu().numpy(), mine)
        self._breed_from(mine, scores)
        return _joined((mine, scores, z[index], [rows[i] for i in index]),
                       self._bred_scored([candidates[i] for i in picked if i >= len(first)]))

    def step(self) -> None:
        vocab = self.agent.vocab
        smiles, scores, z, rows = self._pooled() if self.pooled else self._mixed()
        self.memory.add(smiles, scores, z, rows)
        self._observe_range(scores)  # the whole batch, before anything is learnt
        best = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
        best = best[:max(1, int(round(self.top_fraction * len(best))))]
        fresh = (scores[best], z[best], [rows[i] for i in best])
        for update in range(self.updates):
            batch_scores, batch_z, batch_rows = fresh if update == 0 else \
                (np.empty(0), z[:0], [])
            if self.replay and len(self.memory):
                replay_scores, replay_z, replay_tokens = self.memory.sample(
                    self.replay, self.rng)
                batch_scores = np.concatenate([batch_scores, replay_scores])
                batch_z = torch.cat([batch_z, replay_z])
                batch_rows = [*batch_rows, *replay_tokens]
            if batch_rows:
                self._observe_range(batch_scores)  # replayed scores count too
                self._learn(batch_z, pad_rows(batch_rows, vocab.pad_id),
                            self._scaled(batch_scores))

    def _learn(self, z: torch.Tensor, tokens: torch.Tensor, scaled: np.ndarray) -> None:
        with torch.no_grad():
            prior = sampled_log_likelihood(self.prior, z, tokens)
        agent = sampled_log_likelihood(self.agent, z, tokens)
        target = prior + self.sigma * torch.as_tensor(scaled, dtype=torch.float32,
                                                      device=prior.device)
        loss = (target - agent).pow(2).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
