"""One optimization run, as a library call: :func:`optimize`.

The ``molvae optimize`` stage, :func:`molvae.optimize` and the benchmarks all call it, so the
rules that keep runs fair and paid calls safe hold for every caller:

* labels the user already has are free: when the objective is computed from property columns
  of the prepared data (``data``), the training set's latents and values are the warm start;
  anything else the oracle scores counts, an initial design included;
* constrained mode (``start``) searches around the start molecule's encoding; molecules less
  similar than ``min_similarity`` are kept in the table but are not solutions, and the start's
  own score is measured once, outside the budget, to report the improvement;
* every paid call is appended to ``OUT/calls.csv`` as it is scored and reused by a rerun of the
  same objective (:class:`~molvae.optim.oracle.Oracle`); an interrupted run writes its results
  with ``stop_reason: interrupted`` before it stops;
* an objective that fails on its whole first batch stops the run at once, and a run that found
  no solution fails with advice, unless ``allow_degenerate``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError, to_dict
from molvae.latent.encode import encode_split
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import require_gaussian
from molvae.optim.guards import Guards
from molvae.optim.objectives import Objective
from molvae.optim.oracle import Oracle
from molvae.optim.registry import get_method
from molvae.optim.results import degenerate_advice, finish
from molvae.optim.search import Problem, run_search
from molvae.optim.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a run found: its headline numbers, the trace, and the files written (none without
    an output folder)."""

    metrics: dict[str, Any]
    trace: pd.DataFrame
    files: list[Path] = field(default_factory=list)


def optimize(model: SelfiesVAE, objective: Objective, settings: Settings | None = None,
             out: Path | None = None) -> Outcome:
    """Maximize ``objective`` with ``model`` under ``settings.budget`` oracle calls.

    Args:
        model: the trained model, on the device to run on.
        objective: what to maximize (:func:`~molvae.optim.objective_spec.parse_objective` builds
            one from a spec, :class:`~molvae.optim.objectives.CallableObjective` from a Python
            function).
        settings: how (default: the defaults of ``molvae optimize``); summary.json records
            them, with the objective's name.
        out: output folder (candidates.csv, calls.csv, trace, summary.json, pictures); None
            writes nothing, so paid calls are not kept either.

    Raises:
        ConfigError: the start molecule cannot be encoded.
        ObjectiveError: the objective failed on all of the first batch (see above).
        ValueError: no solution was found (see above), or ``model`` is a VQ model.
    """
    require_gaussian(model, "optimization")
    settings = settings or Settings()
    started = time.perf_counter()
    problem = _problem(model, objective, settings, out)
    oracle = problem.oracle
    if problem.start is not None:
        problem.start_record = oracle.measure(problem.start)
    record = {"objective": objective.name, **to_dict(settings)}
    outputs = (out, record, oracle, problem.train, problem.start_record)
    try:
        optimizer = get_method(settings.method).optimizer.build(problem,
                                                                settings.method_options)
        stop = run_search(optimizer, oracle, settings.patience)
    except (KeyboardInterrupt, SystemExit):  # keep what the objective was paid for
        log.warning("interrupted after %d oracle calls; partial results in %s", oracle.calls,
                    out)
        finish(*outputs, time.perf_counter() - started, "interrupted", settings.grid_size)
        raise
    metrics, trace, files = finish(*outputs, time.perf_counter() - started, stop,
                                   settings.grid_size)
    if metrics["n_nan_scores"]:
        log.warning("%d of %d molecules scored have no score: the objective failed on them "
                    "(first: %s); see score_failure in %s", metrics["n_nan_scores"],
                    metrics["n_calls"], metrics["first_score_failure"],
                    out / "candidates.csv" if out is not None else "the candidates")
    advice = degenerate_advice(metrics)
    if advice and not settings.allow_degenerate:
        raise ValueError(f"{advice} (outputs kept in {out})" if out is not None else advice)
    return Outcome(metrics, trace, files)


def _problem(model: SelfiesVAE, objective: Objective, settings: Settings, out: Path | None
             ) -> Problem:
    """The start molecule and the training set encoded, the guards filled in, the oracle."""
    start = start_z = None
    if settings.start is not None:
        try:  # before any work: with tokens the model never saw it would start elsewhere
            model.check_encodable([settings.start])
        except ValueError as err:
            raise ConfigError(f"start: {err}") from None
        start = chem.canonical_smiles(settings.start)
        if start is None:  # Settings.validate refuses it; a hand-made Settings may not be
            raise ConfigError(f"start '{settings.start}' is not a valid SMILES")
        start_z = model.encode([start])[0][0]
    train = train_z = None
    if settings.data is not None:
        cache = settings.cache_dir or (out / "cache" if out is not None else None)
        train_z, train = encode_split(model, settings.data, "train", cache)
    oracle = Oracle(objective, settings.budget, resolved_guards(settings, model, train), start,
                    settings.min_similarity,
                    log_path=out / "calls.csv" if out is not None else None,
                    fail_fast=not settings.allow_degenerate)
    return Problem(model, objective, oracle, np.random.default_rng(settings.seed),
                   settings.method, settings.batch_size, settings.init_size, settings.radius,
                   settings.seed, train, train_z, start, start_z, regress=settings.regress)


def largest_heavy_atoms(train: pd.DataFrame) -> int:
    """The training set's largest molecule in heavy atoms: its ``heavy_atoms`` column, or,
    when prep computed no properties (``--properties none``), counted from the SMILES (a few
    seconds for 250k molecules)."""
    if "heavy_atoms" in train.columns:
        return int(train["heavy_atoms"].max())
    log.info("no heavy_atoms column in the training set: counting them from its SMILES")
    return max(map(chem.heavy_atom_count, train["smiles"]))


def resolved_guards(settings: Settings, model: SelfiesVAE, train: pd.DataFrame | None
                    ) -> Guards:
    """The guards of ``settings``, size limits left at None defaulting to the training set's
    largest molecule (tokens: the model's longest without one); with ``novel_only`` the
    training molecules are not solutions."""
    guards = settings.guards()
    heavy, tokens = guards.max_heavy_atoms, guards.max_tokens
    if train is not None:
        heavy = heavy if heavy is not None else largest_heavy_atoms(train)
        tokens = tokens if tokens is not None else int(train["n_tokens"].max())
    tokens = tokens if tokens is not None else int(model.vocab.max_length)
    known = frozenset(train["smiles"]) if settings.novel_only and train is not None \
        else frozenset()
    return dataclasses.replace(guards, max_heavy_atoms=heavy, max_tokens=tokens, known=known)
