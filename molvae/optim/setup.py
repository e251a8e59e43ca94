"""From the optimize stage's options to a ready optimizer: the model and its training latents,
the guards, the warm start of the latent optimizers, the policy's first memory, surrogates.

Kept apart from :mod:`molvae.stages.optimize` (options, the run, its outputs) so each module
has one job; the stage's config is only read here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError
from molvae.latent.encode import encode_split
from molvae.latent.surrogate import fit_surrogate, load_surrogate
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE
from molvae.optim.objectives import Objective, score_table
from molvae.optim.oracle import Filters, Oracle
from molvae.optim.policy import PolicySearch
from molvae.optim.search import (
    CmaEs,
    Evaluator,
    GradientAscent,
    LatentOptimizer,
    RandomSearch,
    TrustRegionBO,
    WarmStart,
    fill_failures,
)
from molvae.tracking import local_model_dir

if TYPE_CHECKING:
    from molvae.stages.optimize import OptimizeConfig

log = logging.getLogger(__name__)

SURROGATE_MAX_TRAIN = 4000


@dataclass
class Context:
    """What the setup found: the model, the training table and latents, the start's z."""

    model: SelfiesVAE
    train: pd.DataFrame | None = None
    train_z: np.ndarray | None = None
    start: str | None = None
    start_z: np.ndarray | None = None


def load_context(config: OptimizeConfig) -> Context:
    """Load the model, encode the training set (with ``--data``) and the start molecule."""
    context = Context(load_model(local_model_dir(config.model), config.device))
    if config.data is not None:
        cache = config.cache_dir or config.out / "cache"
        context.train_z, context.train = encode_split(context.model, config.data, "train",
                                                             cache)
    if config.start is not None:
        context.start = chem.canonical_smiles(config.start)
        context.start_z = context.model.encode([context.start])[0][0]
        if not np.isfinite(context.start_z).all():
            raise ConfigError(f"start '{config.start}' cannot be encoded by this model "
                              "(a SELFIES token outside its vocabulary)")
    return context


def largest_heavy_atoms(train: pd.DataFrame) -> int:
    """The training set's largest molecule in heavy atoms: its ``heavy_atoms`` column, or,
    when prep computed no properties (``--properties none``), counted from the SMILES (a few
    seconds for 250k molecules)."""
    if "heavy_atoms" in train.columns:
        return int(train["heavy_atoms"].max())
    log.info("no heavy_atoms column in the training set: counting them from its SMILES")
    return max(map(chem.heavy_atom_count, train["smiles"]))


def make_filters(config: OptimizeConfig, context: Context) -> Filters:
    """Guards, with size limits defaulting to the training set's largest molecule."""
    heavy, tokens = config.max_heavy_atoms, config.max_tokens
    if context.train is not None:
        heavy = heavy if heavy is not None else largest_heavy_atoms(context.train)
        tokens = tokens if tokens is not None else int(context.train["n_tokens"].max())
    tokens = tokens if tokens is not None else int(context.model.vocab.max_length)
    known = frozenset(context.train["smiles"]) if config.novel_only else frozenset()
    return Filters(config.max_sa, config.max_ring_size, heavy, tokens, config.pains, known,
                   config.radicals)


def warm_start(config: OptimizeConfig, context: Context, objective: Objective, oracle: Oracle,
               rng: np.random.Generator) -> WarmStart:
    """Free training labels when there are any, else an initial design scored by the oracle."""
    dim = context.model.latent_dim
    if context.start_z is not None:
        center, scale = context.start_z.astype(float), config.radius
        design = center + scale * rng.standard_normal((config.init_size, dim))
        design[0] = center
    else:
        center, scale = np.zeros(dim), 1.0
        labels = score_table(objective, context.train) if context.train is not None else None
        if labels is not None:
            usable = np.isfinite(context.train_z).all(axis=1)
            log.info("warm start: %d training molecules with free %s labels", usable.sum(),
                     objective.name)
            return WarmStart(context.train_z[usable], labels[usable], center, scale)
        if context.train_z is not None:
            usable = np.flatnonzero(np.isfinite(context.train_z).all(axis=1))
            picked = rng.choice(usable, size=min(config.init_size, len(usable)), replace=False)
            design = context.train_z[picked].astype(float)
        else:
            design = rng.standard_normal((config.init_size, dim))
    design = design[:max(1, min(len(design), config.budget // 4))]
    initial = Evaluator(context.model, oracle, f"{config.method}/init")
    return WarmStart(design, initial(design), center, scale)


def training_examples(config: OptimizeConfig, context: Context, objective: Objective,
                      oracle: Oracle, rng: np.random.Generator
                      ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Training molecules with scores, for the policy's memory: the best of the free labels
    when there are any, else ``init_size`` random ones scored by the oracle (calls spent).

    Returns:
        (SMILES, scores, z), z the molecules' encodings.
    """
    usable = np.flatnonzero(np.isfinite(context.train_z).all(axis=1))
    labels = score_table(objective, context.train)
    if labels is not None:
        picked = usable[np.argsort(-fill_failures(labels[usable]), kind="stable")[:1000]]
    else:
        size = min(config.init_size, len(usable), max(1, config.budget // 4))
        picked = rng.choice(usable, size=size, replace=False)
    smiles = context.train["smiles"].iloc[picked].tolist()
    scores = labels[picked] if labels is not None else Evaluator(
        context.model, oracle, "policy/init").score(context.train_z[picked], smiles)
    return smiles, scores, context.train_z[picked]


def _surrogate_fitter(config: OptimizeConfig, warm: WarmStart):  # noqa: ANN202 (a closure)
    """Fit a surrogate on observed values plus at most SURROGATE_MAX_TRAIN warm-start rows."""
    rng = np.random.default_rng(config.seed + 1)
    n_warm = len(warm.y)
    warm_rows = np.sort(rng.choice(n_warm, size=min(n_warm, SURROGATE_MAX_TRAIN), replace=False))

    def fit(z: np.ndarray, y: np.ndarray) -> Any:
        rows = np.concatenate([warm_rows, np.arange(n_warm, len(y))])
        return fit_surrogate(z[rows], fill_failures(y)[rows], seed=config.seed,
                                    epochs=config.surrogate_epochs,
                                    hidden_dim=config.surrogate_hidden)

    return fit


def make_policy(config: OptimizeConfig, context: Context, objective: Objective,
                evaluate: Evaluator, empty: WarmStart, rng: np.random.Generator,
                start_record: dict[str, Any] | None) -> PolicySearch:
    """The decoder as a policy, its memory started from the start molecule (constrained
    mode) or from scored training molecules (with ``--data``)."""
    policy = PolicySearch(evaluate, empty, batch_size=config.batch_size, rng=rng,
                          sigma=config.policy_sigma, learning_rate=config.policy_learning_rate,
                          top_fraction=config.policy_top_fraction, replay=config.policy_replay,
                          updates=config.policy_updates, local=config.policy_local,
                          radius=config.policy_radius, temperature=config.policy_temperature,
                          crossover=config.policy_crossover,
                          population=config.policy_population, screen=config.policy_screen,
                          constrained=context.start_z is not None, seed=config.seed)
    if start_record is not None:
        policy.remember([context.start], np.array([start_record["score"]]),
                        context.start_z[None])
    elif context.train_z is not None:
        policy.remember(*training_examples(config, context, objective, evaluate.oracle, rng))
    return policy


def make_optimizer(config: OptimizeConfig, context: Context, objective: Objective,
                   oracle: Oracle, rng: np.random.Generator,
                   start_record: dict[str, Any] | None = None) -> LatentOptimizer:
    """The chosen optimizer, warm-started (random search and the policy sample their own)."""
    evaluate = Evaluator(context.model, oracle, config.method)
    common = {"batch_size": config.batch_size, "rng": rng}
    if config.method in ("random", "policy"):
        center = context.start_z.astype(float) if context.start_z is not None else \
            np.zeros(context.model.latent_dim)
        scale = config.radius if context.start_z is not None else 1.0
        empty = WarmStart(np.empty((0, len(center))), np.empty(0), center, scale)
        if config.method == "policy":
            return make_policy(config, context, objective, evaluate, empty, rng, start_record)
        return RandomSearch(evaluate, empty, **common)
    warm = warm_start(config, context, objective, oracle, rng)
    if config.method == "cmaes":
        return CmaEs(evaluate, warm, sigma=config.sigma, seed=config.seed, **common)
    if config.method == "bo":
        return TrustRegionBO(evaluate, warm, acquisition=config.acquisition,
                             length=config.trust_length, seed=config.seed, **common)
    fit = _surrogate_fitter(config, warm)
    surrogate, sign = None, 1.0
    single = objective.surrogate_property
    if config.regress is not None and single is not None:
        try:
            surrogate, sign = load_surrogate(config.regress, single[0]), single[1]
            log.info("gradient: surrogate of %s from %s", single[0], config.regress)
        except FileNotFoundError as err:
            log.info("gradient: %s; fitting one instead", err)
    if surrogate is None:
        surrogate = fit(warm.z, warm.y)
        log.info("gradient: surrogate fitted on %d points (validation r2 %.2f)",
                 int(surrogate.scores.get("n_train", 0)), surrogate.scores.get("r2", math.nan))
    return GradientAscent(evaluate, warm, surrogate=surrogate, refit=fit, sign=sign,
                          steps=config.ascent_steps, lr=config.learning_rate,
                          prior_weight=config.prior_weight, refit_every=config.refit_every,
                          **common)
