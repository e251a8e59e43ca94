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
* how a batch is shared among the agent, the GA's crossover and its mutation is set by a
  bandit (:class:`~molvae.optim.bandit.OperatorBandit`) on how often each one's molecules
  lately entered the best found so far: the decoder pays on some objectives and not others,
  mutation late in a run more than early, and no fixed mix suits them all (``bandit`` off:
  ``crossover`` of the batch is bred, ``mutation`` of that by mutation alone);
* the GA breeds ``screen`` times more new children than it scores and spends the calls on
  those a surrogate fitted to every scored molecule rates best (a Gaussian process's upper
  confidence bound, :class:`~molvae.optim.tanimoto_gp.TanimotoGP`, by default on Morgan bits
  and on the descriptors design objectives weigh, or the scores of the nearest scored
  molecules, :class:`molvae.chem.NeighbourScores`): children resemble their parents, so the
  molecules already scored are a free surrogate.

With a prepared data set the memory starts from scored training molecules (free labels when
the objective is a property column, else a random sample scored through the oracle); without
one, from ``init_size`` molecules the model writes from its fitted prior, scored, so the
default needs nothing but the model. Until some molecule scores better than another (a needle
such as a substructure no molecule so far has), the agent writes from the prior and learns
nothing: there is no best to vary, and learning toward all alike would only narrow it.
Repeats are free in the oracle, so a batch that rewrites known molecules costs no calls; a
search that keeps doing so is restarted from the pretrained weights (the memory stays).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from molvae.config import option
from molvae.data.tokens import tokenize
from molvae.model.likelihood import sampled_log_likelihood
from molvae.optim.bandit import OperatorBandit
from molvae.optim.breeder import SURROGATES, Breeder
from molvae.optim.memory import Memory, pad_rows, trim
from molvae.optim.objectives import score_table
from molvae.optim.search import LatentOptimizer, LatentScorer, Problem, fill_failures

MEMORY_SIZE = 100  # best molecules kept for replay


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
    crossover: float = option(0.9, help="with the bandit off, the share of each batch bred by "
                              "Graph GA crossover and mutation of the best molecules so far",
                              bounds="[0, 1)")
    population: int = option(500, help="best molecules the GA breeds from", bounds="[1, inf)")
    mutation: float = option(0.1, help="with the bandit off, the share of the GA's children "
                             "made by mutating one parent (small edits); the rest by crossover "
                             "of two", bounds="[0, 1]")
    screen: int = option(3, help="GA children bred per child scored; above 1 only those the "
                         "surrogate rates best are scored", bounds="[1, inf)")
    surrogate: str = option("gp-descriptors", help="what rates the GA's children: "
                            "gp-descriptors (a Gaussian process, upper confidence bound, with "
                            "the Tanimoto kernel on Morgan bits times a kernel on logP, TPSA "
                            "and other descriptors), gp (the Tanimoto kernel alone) or "
                            "neighbours (the scores of the most similar scored molecules)",
                            choices=SURROGATES)
    max_heavy_atoms: int = option(100, help="largest molecule a call is spent on, in heavy "
                                  "atoms (GA crossover grows molecules without bound)",
                                  bounds="[1, inf)")
    bandit: bool = option(True, help="the shares of each batch the agent writes and the GA "
                          "breeds by crossover and by mutation follow how often each one's "
                          "molecules lately entered the best 100 found (Thompson sampling); "
                          "crossover and mutation then set nothing, and the agent's "
                          "writes are screened too")


Scored = tuple[list[str | None], np.ndarray, torch.Tensor, list[torch.Tensor]]
"""Scored molecules the agent can learn from: (SMILES, scores, z, token rows)."""

ARMS = ("agent", "crossover", "mutation")  # the bandit's operators
BAR_RANK = MEMORY_SIZE  # a bandit's success enters the best this many found


def _joined(*parts: Scored) -> Scored:
    """Scored molecules of several sources as one batch."""
    return ([text for part in parts for text in part[0]],
            np.concatenate([part[1] for part in parts]),
            torch.cat([part[2] for part in parts]), [row for part in parts for row in part[3]])


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
        self.crossover = options.crossover
        self.breeder = Breeder(options.population, options.mutation, options.screen,
                               options.surrogate, seed, options.max_heavy_atoms)
        self.bandit = OperatorBandit(ARMS, self.rng) if options.bandit else None
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
        self.breeder.add(smiles, scores)
        self.memory.add(smiles, scores, z, rows)
        self._observe_range(scores)

    def remember(self, smiles: list[str], scores: np.ndarray, z: np.ndarray) -> None:
        """Put known molecules (e.g. scored training molecules, z their encodings) in the
        memory, so the agent learns from the best of them from its first step; those the
        model's vocabulary cannot write are left out."""
        self.breeder.add(smiles, scores)
        self._observe_range(np.asarray(scores, dtype=float))
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
        near = min(n, int(round(self.local * n))) if len(self.memory) and self._signal() else 0
        if near:
            _, centers, _ = self.memory.sample(near, self.rng, by_rank=True)
            z[:near] = centers + self.radius * (eps[:near] @ self.prior.latent_scale.T)
        return z

    def _observe_range(self, scores: np.ndarray) -> None:
        """Widen the range of scores seen by a new batch's (NaN, no solution, ignored)."""
        finite = scores[np.isfinite(scores)]
        if len(finite):
            self.low, self.high = min(self.low, finite.min()), max(self.high, finite.max())

    def _signal(self) -> bool:
        """Whether some molecule has scored better than another: until then there is no best
        to write variations of or to learn toward (a needle such as a substructure every
        molecule so far lacks), so the agent writes from the prior and is held to it."""
        return self.high > self.low

    def _scaled(self, scores: np.ndarray) -> np.ndarray:
        """Scores mapped to [0, 1] by the range seen so far (all 0 without a signal); no
        solution counts 0."""
        if not self._signal():
            return np.zeros_like(scores, dtype=float)
        scaled = (scores - self.low) / (self.high - self.low)
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

    def _written(self, n: int, source: str = "") -> Scored:
        """``n`` molecules written by the agent, scored: (SMILES, scores, z, token rows);
        ``source`` is recorded with them (see :meth:`LatentScorer.score`)."""
        smiles, z, rows = self._write(n)
        scores = self.scorer.score(z.cpu().numpy(), smiles, source=source)
        return smiles, scores, z, rows

    def _nothing(self) -> Scored:
        """An empty batch."""
        return [], np.empty(0), torch.empty(0, self.dim, device=self.prior.device), []

    def _bred(self, n: int, arm: str = "crossover") -> Scored:
        """Up to ``n`` GA offspring, screened and scored (``arm`` credited under the bandit and
        recorded as their source): "mutation" makes them by mutation alone, "crossover" by the
        options' blend (by crossover alone under the bandit). Those the model can write come
        back with their encodings as z and their token rows, so the agent learns from them
        too."""
        mutation = 1.0 if arm == "mutation" else 0.0 if self.bandit else None
        candidates = self.breeder.children(n * self.breeder.screen, self.scorer.oracle.records,
                                           mutation)
        children = [candidates[i] for i in self.breeder.screened(candidates, n)]
        if not children:
            return self._nothing()
        mu = self.prior.encode(children)[0]
        scores = self.scorer.score(mu, children, source=arm)
        self.breeder.add(children, scores)
        if self.bandit:
            self.bandit.reward(arm, scores)
        usable, rows = self._writable(children)
        z = torch.as_tensor(mu[usable], device=self.prior.device)
        return [children[i] for i in usable], scores[usable], z, rows

    def _screened_writes(self, n: int) -> Scored:
        """The agent writes ``screen`` times ``n`` molecules; the ``n`` new ones the surrogate
        rates best are scored (and credited under the bandit)."""
        if n < 1:
            return self._nothing()
        written, z, rows = self._write(n * self.breeder.screen)
        oracle = self.scorer.oracle
        first: dict[str, int] = {}  # each new molecule -> where the agent first wrote it
        for i, text in enumerate(written):
            key = oracle.key(text)
            if key is not None and key not in oracle.records:
                first.setdefault(key, i)
        new = list(first)
        keys = [new[i] for i in self.breeder.screened(new, n)]
        index = [first[key] for key in keys]
        picked: list[str | None] = [*keys]
        scores = self.scorer.score(z[index].cpu().numpy(), picked)
        self.breeder.add(picked, scores)
        if self.bandit:
            self.bandit.reward("agent", scores)
        return picked, scores, z[index], [rows[i] for i in index]

    def _mixed(self) -> Scored:
        """A batch of the agent's writes and ``crossover`` of it GA offspring, scored."""
        n_bred = int(round(self.crossover * self.batch_size))
        smiles, scores, z, rows = self._written(self.batch_size - n_bred)
        self.breeder.add(smiles, scores)
        return _joined((smiles, scores, z, rows), self._bred(n_bred))

    def _allotted(self) -> Scored:
        """A batch the bandit shares among the agent's writes and the GA's crossover and
        mutation, each screened (``screen`` times its share proposed), scored and credited."""
        assert self.bandit is not None
        self.bandit.new_round(self.breeder.bar(BAR_RANK))
        counts = self.bandit.allot(self.batch_size)
        written = self._screened_writes(counts["agent"])
        return _joined(written, self._bred(counts["crossover"]),
                       self._bred(counts["mutation"], "mutation"))

    def step(self) -> None:
        vocab = self.agent.vocab
        smiles, scores, z, rows = self._allotted() if self.bandit else self._mixed()
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
