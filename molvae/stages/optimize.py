"""The optimize stage: find molecules that maximize an objective, under a fixed oracle budget.

Pieces: an objective (:mod:`molvae.optim.objectives`), an :class:`~molvae.optim.oracle.Oracle`
that scores each new molecule once and stops exactly at the budget, a warm start, and one of
the optimizers of :mod:`molvae.optim.search`. Rules that keep comparisons fair:

* Labels the user already has are free: when the objective is computed from property
  columns of the prepared data (``--data``), the training set's latents and values are the
  warm start. Anything else the oracle scores counts, including an initial design.
* Constrained mode (``--start``) searches around the start molecule's encoding; molecules
  less similar than ``--min-similarity`` are kept in the table but are not solutions. The
  start's own score is measured once, outside the budget, to report the improvement.

Outputs in ``OUT``: candidates.csv (ranked), trace.csv and trace.png (best and top-10 mean
against oracle calls), summary.json (top-1/3/10, the PMO AUC of the top-10 curve, pass counts),
calls.csv (every scored molecule, appended as it is scored, so an interrupted run keeps them; an
interrupt also writes the rest with ``stop_reason: interrupted``). A run that found no solution
fails with advice unless ``allow_degenerate``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from molvae import chem
from molvae.config import ConfigError, option, to_dict
from molvae.latent.surrogate import SURROGATE_EPOCHS, SURROGATE_HIDDEN
from molvae.optim.objectives import Objective, parse_objective
from molvae.optim.oracle import Oracle
from molvae.optim.results import degenerate_advice, finish
from molvae.optim.search import ACQUISITIONS, METHODS, run_search
from molvae.optim.setup import load_context, make_filters, make_optimizer
from molvae.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class OptimizeConfig:
    """Options of ``molvae optimize``."""

    model: str = option(help="trained model folder (`molvae train --out`) or models:/NAME/VERSION")
    objective: str = option("qed", help="what to maximize: qed, plogp, min:sa, mw_range:300:450, "
                            "similarity:SMILES, package.module:function or an MPO FILE.yaml")
    budget: int = option(1000, help="oracle calls: new unique valid molecules scored")
    out: Path = option(Path("optimize"), help="output folder")
    method: str = option("policy", help=f"optimizer: {', '.join(METHODS)}")
    data: Path | None = option(None, help="prepared data folder: warm start, novelty, size guards")
    regress: Path | None = option(None, help="regress output folder: its surrogate climbs "
                                  "single-property objectives (gradient method)")
    start: str | None = option(None, help="constrained mode: SMILES of the molecule to improve")
    min_similarity: float = option(0.4, help="constrained mode: least Tanimoto similarity to "
                                   "--start of a solution")
    radius: float = option(0.5, help="constrained mode: spread of the search around the start's z")
    batch_size: int = option(64, help="latent points proposed per step")
    init_size: int = option(64, help="initial design scored by the oracle when no free labels")
    max_sa: float | None = option(None, help="guard: largest SA score of a solution")
    max_ring_size: int | None = option(8, help="guard: largest ring of a solution")
    max_heavy_atoms: int | None = option(None, help="guard: most heavy atoms (default: the "
                                         "training set's largest, with --data)")
    max_tokens: int | None = option(None, help="guard: most SELFIES tokens (default: the "
                                    "training set's longest)")
    pains: bool = option(True, help="guard: reject PAINS alerts")
    radicals: bool = option(True, help="guard: reject molecules with unpaired electrons")
    novel_only: bool = option(False, help="guard: molecules of the training set (--data) are "
                              "not solutions")
    acquisition: str = option("ei", help=f"bo: acquisition, {' or '.join(ACQUISITIONS)}")
    trust_length: float = option(0.8, help="bo: initial trust-region side length")
    sigma: float = option(0.5, help="cmaes: initial step size")
    prior_weight: float = option(0.05, help="gradient: weight of the -||z||^2/2 prior term")
    ascent_steps: int = option(40, help="gradient: Adam steps per trajectory")
    learning_rate: float = option(0.05, help="gradient: Adam step size")
    refit_every: int = option(4, help="gradient: refit the surrogate every N steps")
    surrogate_epochs: int = option(SURROGATE_EPOCHS, help="gradient: most epochs of a "
                                   "surrogate fit")
    surrogate_hidden: int = option(SURROGATE_HIDDEN, help="gradient: hidden width of a fitted "
                                   "surrogate")
    policy_sigma: float = option(500.0, help="policy: weight of the [0, 1]-scaled score in the "
                                 "augmented likelihood (REINVENT's sigma)")
    policy_learning_rate: float = option(5e-3, help="policy: Adam step size of the agent")
    policy_top_fraction: float = option(0.5, help="policy: best share of each batch that "
                                        "trains the agent")
    policy_replay: int = option(64, help="policy: best molecules so far replayed each step")
    policy_local: float = option(0.9, help="policy: share of the agent's molecules written "
                                 "near the best molecules so far (their z plus noise); the rest "
                                 "from the prior")
    policy_radius: float = option(0.1, help="policy: spread of z around the best molecules, in "
                                  "units of the prior's")
    policy_temperature: float = option(1.0, help="policy: sampling temperature of the agent "
                                       "(lower keeps constrained searches nearer the start)")
    policy_updates: int = option(2, help="policy: agent updates per batch (the extra ones "
                                 "replay the memory)")
    policy_crossover: float = option(0.9, help="policy: share of each batch bred by Graph GA "
                                     "crossover and mutation of the best molecules so far")
    policy_population: int = option(500, help="policy: best molecules the GA breeds from")
    policy_screen: int = option(3, help="policy: GA children bred per child scored; above 1 "
                                "only those whose most similar scored molecules score best "
                                "are scored")
    patience: int = option(20, help="stop after this many steps without a new molecule")
    grid_size: int = option(24, help="top molecules drawn in grid.png (0 = none)")
    cache_dir: Path | None = option(None, help="latent cache folder (default OUT/cache)")
    device: str = option("auto", help="auto, cpu, cuda, cuda:1, mps")
    seed: int = option(0, help="random seed")
    allow_degenerate: bool = option(False, help="succeed even when no solution was found "
                                    "(by default such a run fails with advice)")

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got '{self.method}'")
        if self.acquisition not in ACQUISITIONS:
            raise ConfigError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, "
                              f"got '{self.acquisition}'")
        for key in ("budget", "batch_size", "init_size", "ascent_steps", "refit_every",
                    "policy_updates", "policy_population", "policy_screen",
                    "surrogate_epochs", "surrogate_hidden", "patience"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("radius", "trust_length", "sigma", "learning_rate", "policy_sigma",
                    "policy_learning_rate", "policy_radius", "policy_temperature"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        if not 0 <= self.policy_crossover < 1:
            raise ConfigError(f"policy_crossover must be in [0, 1), got {self.policy_crossover}")
        if not 0 <= self.policy_local <= 1:
            raise ConfigError(f"policy_local must be in [0, 1], got {self.policy_local}")
        if not 0 < self.policy_top_fraction <= 1:
            raise ConfigError(f"policy_top_fraction must be in (0, 1], got "
                              f"{self.policy_top_fraction}")
        if self.policy_replay < 0:
            raise ConfigError(f"policy_replay must be >= 0, got {self.policy_replay}")
        if not 0 <= self.min_similarity <= 1:
            raise ConfigError(f"min_similarity must be in [0, 1], got {self.min_similarity}")
        if self.novel_only and self.data is None:
            raise ConfigError("novel_only needs data (the prepared folder holding the training "
                              "set)")
        if self.start is not None and chem.canonical_smiles(self.start) is None:
            raise ConfigError(f"start '{self.start}' is not a valid SMILES")
        self.parsed_objective()

    def parsed_objective(self) -> Objective:
        """The objective; a bad spec raises a ConfigError naming what is wrong."""
        try:
            return parse_objective(self.objective)
        except ConfigError as err:
            raise ConfigError(f"objective: {err}") from None


@dataclass
class OptimizeResult:
    """Where the candidates went and the headline numbers."""

    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        m = self.metrics
        text = (f"{m['method']} on {m['objective']}: top-1 {m['top1']:.3f}, top-10 mean "
                f"{m['top10_mean']:.3f}, AUC top-10 {m['auc_top10']:.3f} after {m['n_calls']} of "
                f"{m['budget']} oracle calls ({m['n_solutions']} solutions; "
                f"{m['n_pass_filters']} pass the guards) in {m['wall_seconds']:.0f} s")
        if "improvement" in m:
            text += f"; improvement over the start {m['improvement']:+.3f}"
        return f"{text}\n  → {self.out / 'candidates.csv'}"

    def headline(self) -> dict[str, float]:
        """The best objective found, the top-10 mean and the sample efficiency (AUC)."""
        keys = ("top1", "top10_mean", "auc_top10", "n_solutions", "improvement")
        return {k: float(self.metrics[k]) for k in keys if k in self.metrics}


def run(config: OptimizeConfig, tracker: Tracker | None = None) -> OptimizeResult:
    """Optimize ``config.objective`` in the latent space of ``config.model``."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    objective = config.parsed_objective()
    context = load_context(config)
    oracle = Oracle(objective, config.budget, make_filters(config, context), context.start,
                    config.min_similarity, log_path=config.out / "calls.csv")
    start_record = oracle.measure(context.start) if context.start is not None else None
    rng = np.random.default_rng(config.seed)
    outputs = (config.out, to_dict(config), oracle, context.train, start_record)
    try:
        stop = run_search(make_optimizer(config, context, objective, oracle, rng,
                                         start_record), oracle, config.patience)
    except (KeyboardInterrupt, SystemExit):  # keep what the objective was paid for
        log.warning("interrupted after %d oracle calls; partial results in %s", oracle.calls,
                    config.out)
        finish(*outputs, time.perf_counter() - started, "interrupted", config.grid_size)
        raise
    metrics, trace, written = finish(*outputs, time.perf_counter() - started, stop,
                                     config.grid_size)
    advice = degenerate_advice(metrics)
    if advice and not config.allow_degenerate:
        raise ValueError(f"{advice} (outputs kept in {config.out})")
    every = max(1, len(trace) // 200)  # at most ~200 points per curve in MLflow
    for row in trace.iloc[every - 1::every].to_dict("records"):
        step = int(row.pop("oracle_calls"))
        tracker.log_metrics({f"trace/{name}": value for name, value in row.items()}, step=step)
    tracker.log_metrics({k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float, bool))})
    tracker.set_tags({"objective": objective.name, "method": config.method})
    for path in written:
        tracker.log_artifact(path)
    return OptimizeResult(config.out, metrics)
