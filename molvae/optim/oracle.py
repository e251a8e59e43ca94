"""The oracle: scores molecules once each, enforces the call budget, and keeps the trace.

Every optimizer talks to the same :class:`Oracle`, so they are compared on equal terms, as in
the PMO benchmark (Gao et al. 2022): each new unique valid molecule scored is one call, repeats
come from a cache keyed on canonical SMILES and cost nothing, and once the budget is spent no
molecule is scored again. Besides the objective, each molecule is checked against guard
:class:`Filters` (so an optimizer cannot win with long chains or macrocycles) and, in
constrained mode, a minimum similarity to a starting molecule. A molecule is a *solution*
when it passes both; only solutions count in the trace and the ranking.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chem
from molvae.data.tokens import smiles_to_selfies, split_selfies
from molvae.optim.objectives import Objective

TOP_K = 10


@dataclass(frozen=True)
class Filters:
    """Guards next to the objective; None switches a guard off.

    Attributes:
        max_sa: largest synthetic accessibility score (1 easy .. 10 hard).
        max_ring_size: largest ring allowed (macrocycles decode easily but are rarely wanted).
        max_heavy_atoms: largest molecule in heavy atoms.
        max_tokens: largest molecule in SELFIES tokens.
        pains: reject molecules matching a PAINS alert.
        radicals: reject molecules with unpaired electrons.
        known: canonical SMILES that are not solutions, e.g. the training set when only new
            molecules are wanted.
    """

    max_sa: float | None = None
    max_ring_size: int | None = None
    max_heavy_atoms: int | None = None
    max_tokens: int | None = None
    pains: bool = False
    known: frozenset[str] = frozenset()
    radicals: bool = False

    def failures(self, record: dict[str, Any]) -> list[str]:
        """Why a scored molecule fails the guards (empty when it passes)."""
        limits = (("sa", self.max_sa), ("largest_ring", self.max_ring_size),
                  ("heavy_atoms", self.max_heavy_atoms), ("n_tokens", self.max_tokens))
        failed = [f"{key} {record[key]:g} > {limit:g}" for key, limit in limits
                  if limit is not None and not record[key] <= limit]
        if self.pains and not record["pains"] == 0:
            failed.append(f"pains alerts {record['pains']:g}")
        if self.radicals and not record["radicals"] == 0:
            failed.append(f"radical electrons {record['radicals']:g}")
        if record["smiles"] in self.known:
            failed.append("in the training set")
        return failed


def token_count(smiles: str) -> float:
    """Length of a molecule in SELFIES tokens (NaN if it cannot be written as SELFIES)."""
    selfies = smiles_to_selfies(smiles)
    return float(len(split_selfies(selfies))) if selfies else math.nan


def checked_score(value: float) -> tuple[float, str]:
    """The score to record and why it failed ('' when it did not).

    An objective returning +/-inf is broken on that molecule, not infinitely good or bad: an
    inf would become top-1 and make the AUC infinite, so it is recorded as a failure (NaN).
    """
    value = float(value)
    if math.isnan(value):
        return value, "objective returned NaN"
    if not math.isfinite(value):
        return math.nan, f"objective returned {value} (non-finite)"
    return value, ""


class Oracle:
    """Scores molecules for the optimizers under a fixed budget of calls.

    Args:
        objective: what to maximize.
        budget: the most new molecules that will ever be scored.
        filters: guards a solution must pass.
        start: constrained mode: the molecule to improve (its similarity is recorded).
        min_similarity: constrained mode: the least Tanimoto similarity to ``start`` a
            solution may have.
        log_path: CSV that every new record is appended to as soon as it is scored, so the
            calls an expensive objective has paid for survive a crash or Ctrl-C.
    """

    def __init__(self, objective: Objective, budget: int, filters: Filters | None = None,
                 start: str | None = None, min_similarity: float = 0.0,
                 log_path: Path | None = None) -> None:
        if budget < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        self.objective, self.budget = objective, budget
        self.filters = filters or Filters()
        self.start, self.min_similarity = start, min_similarity
        self.log_path = log_path
        self.records: dict[str, dict[str, Any]] = {}  # canonical SMILES -> record
        self._canonical: dict[str, str | None] = {}  # other spellings -> canonical SMILES
        self.calls = 0
        self.best_trace: list[float] = []
        self.top_trace: list[float] = []
        self._top: list[float] = []

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    def measure(self, smiles: str) -> dict[str, Any]:
        """Everything recorded for a molecule: score, properties, guards, similarity to start."""
        props = chem.smiles_properties(smiles)
        score, score_failure = checked_score(self.objective.score(smiles, props))
        record: dict[str, Any] = {"smiles": smiles, "score": score,
                                  "score_failure": score_failure, **props,
                                  **chem.structure_alerts(smiles),
                                  "n_tokens": token_count(smiles)}
        failures = self.filters.failures(record)
        record["passes_filters"] = not failures
        record["filter_failures"] = "; ".join(failures)
        if self.start is not None:
            record["similarity"] = chem.similarity(smiles, self.start)
            record["feasible"] = bool(record["similarity"] >= self.min_similarity)
        else:
            record["feasible"] = True
        return record

    def is_solution(self, record: dict[str, Any]) -> bool:
        """A scored molecule that passes the guards and the similarity constraint."""
        return record["passes_filters"] and record["feasible"] and not math.isnan(record["score"])

    def evaluate(self, smiles: Sequence[str | None], method: str = "") -> np.ndarray:
        """Scores (NaN: invalid, not a solution, or not scored because the budget is spent).

        Args:
            smiles: decoded molecules (canonical SMILES or None).
            method: who proposed them (recorded with each new molecule).

        Returns:
            one fitness per input, what the optimizers climb: the score of a solution, NaN
            for everything else.
        """
        fitness = np.full(len(smiles), np.nan)
        for i, text in enumerate(smiles):
            key = self._key(text)
            if key is None:
                continue
            record = self.records.get(key)
            if record is None and not self.exhausted:
                record = self._score_new(key, method)
            if record is not None and self.is_solution(record):
                fitness[i] = record["score"]
        return fitness

    def _key(self, smiles: str | None) -> str | None:
        """The canonical SMILES a molecule is cached under (None: not a molecule)."""
        if not smiles or smiles in self.records:
            return smiles or None
        if smiles not in self._canonical:
            self._canonical[smiles] = chem.canonical_smiles(smiles)
        return self._canonical[smiles]

    def _score_new(self, smiles: str, method: str) -> dict[str, Any]:
        record = self.measure(smiles)  # first: an objective that raises is no call made
        self.calls += 1
        record.update(oracle_call=self.calls, method=method)
        self.records[smiles] = record
        self._append_to_log(record)
        if self.is_solution(record):
            self._top = sorted([*self._top, record["score"]], reverse=True)[:TOP_K]
        self.best_trace.append(self._top[0] if self._top else math.nan)
        self.top_trace.append(float(np.mean(self._top)) if self._top else math.nan)
        return record

    def _append_to_log(self, record: dict[str, Any]) -> None:
        """Append one record to ``log_path`` (the first call of a run starts the file afresh);
        the file is closed, hence flushed, after every record."""
        if self.log_path is None:
            return
        first = self.calls == 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w" if first else "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(record))
            if first:
                writer.writeheader()
            writer.writerow(record)

    def table(self) -> pd.DataFrame:
        """Every scored molecule, solutions first, then by score (NaN last)."""
        table = pd.DataFrame(list(self.records.values()))
        if table.empty:
            return table
        table["solution"] = [self.is_solution(r) for r in self.records.values()]
        table = table.sort_values(["solution", "score"], ascending=[False, False],
                                  na_position="last", kind="stable")
        return table.reset_index(drop=True)

    def trace(self) -> pd.DataFrame:
        """Best and top-10 mean solution score after each oracle call."""
        return pd.DataFrame({"oracle_calls": np.arange(1, self.calls + 1),
                             "best": self.best_trace, f"top{TOP_K}_mean": self.top_trace})

    def auc_top(self) -> float:
        """Area under the top-10-mean curve over the whole budget, divided by the budget.

        As in PMO: a call before the first solution counts 0 and a run that stopped early keeps
        its last value up to the budget, so stopping early is not rewarded.
        """
        curve = np.nan_to_num(np.asarray(self.top_trace, dtype=float), nan=0.0)
        if not len(curve):
            return 0.0
        padded = np.concatenate([curve, np.full(self.budget - len(curve), curve[-1])])
        return float(padded.mean())
