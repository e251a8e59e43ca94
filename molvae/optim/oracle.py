"""The oracle: scores molecules once each, enforces the call budget, and keeps the trace.

Every optimizer talks to the same :class:`Oracle`, so they are compared on equal terms, as in
the PMO benchmark (Gao et al. 2022): each new unique valid molecule scored is one call, repeats
come from a cache keyed on canonical SMILES and cost nothing, and once the budget is spent no
molecule is scored again. Besides the objective, each molecule is checked against the
:class:`Guards` (so an optimizer cannot win with long chains or macrocycles) and, in
constrained mode, a minimum similarity to a starting molecule. A molecule is a *solution*
when it passes both; only solutions count in the trace and the ranking.

Paid calls are never lost: each is appended to ``calls.csv`` as it is scored, with the
objective's name and fingerprint. A rerun into the same folder with the same objective reuses
the scores recorded there (a molecule already scored still counts toward the budget, so a
rerun continues the run rather than extending it, but its objective is not called again); a
file of another objective is moved aside (``calls-1.csv``, ...), never overwritten, and a
later run of that objective reuses it too. An objective that fails on every molecule of the
first batch it is asked to score is broken, and the oracle says so at once
(:class:`ObjectiveError`) instead of spending the budget on NaN.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chem
from molvae.data.tokens import smiles_to_selfies, split_selfies
from molvae.io import atomic_path
from molvae.optim.auc import TOP_K
from molvae.optim.guards import Guards
from molvae.optim.objectives import Objective

log = logging.getLogger(__name__)


class ObjectiveError(ValueError):
    """The objective failed on every molecule of the first batch: it is broken, not the
    model, so the run stops before it spends the budget on NaN."""


def objective_id(objective: Objective) -> str:
    """A short digest of the objective's fingerprint ('' when it has none): what a calls.csv
    row records so that a rerun reuses only the same objective's scores."""
    fingerprint = objective.fingerprint
    return hashlib.sha256(fingerprint.encode()).hexdigest()[:16] if fingerprint else ""


def paid_scores(calls: pd.DataFrame) -> dict[str, float]:
    """The finite scores of a calls table (read as strings), by SMILES in the table's order,
    which is call order: failures are left out, to be scored again (the objective may have
    been fixed since)."""
    if not {"smiles", "score", "score_failure"} <= set(calls.columns):
        return {}
    scores = pd.to_numeric(calls["score"], errors="coerce")
    usable = (calls["score_failure"] == "") & np.isfinite(scores) & (calls["smiles"] != "")
    return dict(zip(calls.loc[usable, "smiles"], scores[usable].astype(float), strict=True))


def token_count(smiles: str) -> float:
    """Length of a molecule in SELFIES tokens (NaN if it cannot be written as SELFIES)."""
    selfies = smiles_to_selfies(smiles)
    return float(len(split_selfies(selfies))) if selfies else math.nan


def checked_score(value: float, reason: str = "") -> tuple[float, str]:
    """The score to record and why it failed ('' when it did not).

    An objective returning +/-inf is broken on that molecule, not infinitely good or bad: an
    inf would become top-1 and make the AUC infinite, so it is recorded as a failure (NaN).
    ``reason`` is the objective's own account of a NaN (an exception, a non-number).
    """
    value = float(value)
    if math.isnan(value):
        return value, reason or "objective returned NaN"
    if not math.isfinite(value):
        return math.nan, f"objective returned {value} (non-finite)"
    return value, ""


class Oracle:
    """Scores molecules for the optimizers under a fixed budget of calls.

    Args:
        objective: what to maximize.
        budget: the most new molecules that will ever be scored.
        guards: what a solution must pass (default: :class:`Guards`' defaults).
        start: constrained mode: the molecule to improve (its similarity is recorded).
        min_similarity: constrained mode: the least Tanimoto similarity to ``start`` a
            solution may have.
        log_path: CSV that every new record is appended to as soon as it is scored, so the
            calls an expensive objective has paid for survive a crash or Ctrl-C. When it
            already holds calls of this objective, their scores are reused (see the module
            docstring); when it holds another objective's, it is moved aside before the first
            new record is written.
        fail_fast: raise :class:`ObjectiveError` when the objective fails on every molecule
            of the first batch that it scores.
    """

    def __init__(self, objective: Objective, budget: int, guards: Guards | None = None,
                 start: str | None = None, min_similarity: float = 0.0,
                 log_path: Path | None = None, fail_fast: bool = True) -> None:
        if budget < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        self.objective, self.budget = objective, budget
        self.guards = guards or Guards()
        self.start, self.min_similarity = start, min_similarity
        self.log_path, self.fail_fast = log_path, fail_fast
        self.objective_id = objective_id(objective)
        self.records: dict[str, dict[str, Any]] = {}  # canonical SMILES -> record
        self._canonical: dict[str, str | None] = {}  # other spellings -> canonical SMILES
        self.calls = 0
        self.reused = 0  # calls answered from the scores recorded in log_path
        self.failures = 0  # calls whose score failed (NaN, inf, an error, not a number)
        self.best_trace: list[float] = []
        self.top_trace: list[float] = []
        self._top: list[float] = []
        self._vetted = False  # the first batch has shown the objective can score something
        self.recorded: dict[str, float] = {}  # canonical SMILES -> score paid for earlier
        self._log_header: list[str] | None = None
        self._set_aside = False
        self._read_log()

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    def measure(self, smiles: str) -> dict[str, Any]:
        """Everything recorded for a molecule: score, properties, guards, similarity to start.
        A score recorded in ``log_path`` by an earlier run of this objective is reused."""
        props = chem.smiles_properties(smiles)
        if smiles in self.recorded:
            score, score_failure = self.recorded[smiles], ""
        else:
            score, score_failure = checked_score(*self.objective.scored(smiles, props))
        record: dict[str, Any] = {"smiles": smiles, "score": score,
                                  "score_failure": score_failure, **props,
                                  **chem.structure_alerts(smiles),
                                  "n_tokens": token_count(smiles)}
        failures = self.guards.failures(record)
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

    def query(self, smiles: Sequence[str | None], method: str = "") -> np.ndarray:
        """The fitness of each molecule: a new one is scored (one call of the budget), one
        seen before is answered from the cache at no cost.

        NaN: invalid, not a solution, or not scored because the budget is spent.

        Args:
            smiles: decoded molecules (canonical SMILES or None).
            method: who proposed them (recorded with each new molecule).

        Returns:
            one fitness per input, what the optimizers climb: the score of a solution, NaN
            for everything else.
        """
        fitness = np.full(len(smiles), np.nan)
        paid: list[dict[str, Any]] = []
        for i, text in enumerate(smiles):
            key = self.key(text)
            if key is None:
                continue
            record = self.records.get(key)
            if record is None and not self.exhausted:
                record = self._score_new(key, method)
                if key not in self.recorded:
                    paid.append(record)
            if record is not None and self.is_solution(record):
                fitness[i] = record["score"]
        if paid and not self._vetted:
            self._vetted = True
            if self.fail_fast and all(r["score_failure"] for r in paid):
                raise ObjectiveError(self._broken(paid))
        return fitness

    def _broken(self, batch: list[dict[str, Any]]) -> str:
        """Why the run stops: the objective failed on all of its first batch."""
        first = batch[0]
        kept = f"; the calls made are kept in {self.log_path}" if self.log_path else ""
        return (f"objective '{self.objective.name}' failed on all {len(batch)} molecule(s) of "
                f"the first batch, so the objective is broken, not the model: on "
                f"{first['smiles']}: {first['score_failure']}. Fix the objective (or set "
                f"allow_degenerate to go on regardless){kept}")

    def key(self, smiles: str | None) -> str | None:
        """The canonical SMILES a molecule is cached under (None: not a molecule); in
        ``records`` once it is scored."""
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
        if smiles in self.recorded:  # paid for by an earlier run, already in the log
            self.reused += 1
        else:
            self._append_to_log(record)
        if record["score_failure"]:
            self.failures += 1
            if self.failures == 1:
                log.warning("objective %s failed on %s: %s (scored NaN, so it is no solution; "
                            "failures are counted in n_nan_scores and explained in "
                            "score_failure)", self.objective.name, smiles,
                            record["score_failure"])
        if self.is_solution(record):
            self._top = sorted([*self._top, record["score"]], reverse=True)[:TOP_K]
        self.best_trace.append(self._top[0] if self._top else math.nan)
        self.top_trace.append(float(np.mean(self._top)) if self._top else math.nan)
        return record

    def _read_log(self) -> None:
        """Take the scores of this objective already paid for from ``log_path`` and from the
        files set aside next to it (``calls-N.csv``). A ``log_path`` of another objective (or
        one that cannot be read, or of an objective without a fingerprint) is kept and moved
        aside at the first write, never overwritten."""
        path = self.log_path
        if path is None:
            return
        aside = [f for f in path.parent.glob(f"{path.stem}-*{path.suffix}")
                 if f.stem[len(path.stem) + 1:].isdigit()] if path.parent.is_dir() else []
        for file in sorted(aside) + [path]:
            if not file.is_file() or file.stat().st_size == 0:
                continue
            try:
                old = pd.read_csv(file, dtype=str, keep_default_na=False, on_bad_lines="skip")
            except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
                old, why = None, f"cannot be read ({err})"
            else:
                ids = set(old["objective_id"]) if "objective_id" in old else {""}
                same = not len(old) or (self.objective_id and ids == {self.objective_id})
                names = ", ".join(sorted(set(old.get("objective", pd.Series(["unknown"])))))
                why = "" if same else (f"holds {len(old)} oracle calls of another objective "
                                       f"({names}), or of one whose code cannot be compared")
            if why:
                if file == path:
                    self._set_aside = True
                    log.warning("%s %s: they are kept, and the file is moved aside before "
                                "this run records its first call", path, why)
                continue
            self.recorded.update(paid_scores(old))
            if file == path:
                self._log_header = list(old.columns)
        if self.recorded:
            log.info("%s: reusing %d scores paid for by an earlier run of this objective "
                     "(not paid again; each still counts toward the budget when the search "
                     "asks for it)", path, len(self.recorded))

    def _move_aside(self) -> None:
        """Rename ``log_path`` to the first free ``calls-N.csv`` next to it."""
        assert self.log_path is not None
        number = 1
        while (target := self.log_path.with_name(
                f"{self.log_path.stem}-{number}{self.log_path.suffix}")).exists():
            number += 1
        self.log_path.rename(target)
        log.warning("the earlier oracle calls of %s are kept in %s", self.log_path, target)
        self._set_aside = False

    def _append_to_log(self, record: dict[str, Any]) -> None:
        """Append one record to ``log_path``, never truncating it: the file is closed, hence
        flushed, after every record. A row with columns the file lacks (a constrained rerun
        adds ``similarity``) rewrites the file once, atomically, with the union of columns."""
        if self.log_path is None:
            return
        row = {**record, "objective": self.objective.name, "objective_id": self.objective_id}
        if self._set_aside and self.log_path.exists():
            self._move_aside()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        header = self._log_header
        if header is None or not self.log_path.is_file():
            header = list(row)
            with self.log_path.open("w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=header).writeheader()
        elif set(row) - set(header):
            header = header + [c for c in row if c not in header]
            old = pd.read_csv(self.log_path, dtype=str, keep_default_na=False,
                              on_bad_lines="skip")
            with atomic_path(self.log_path) as tmp:
                old.reindex(columns=header, fill_value="").to_csv(tmp, index=False)
        self._log_header = header
        with self.log_path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header, restval="",
                           extrasaction="ignore").writerow(row)

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
