"""What a molecule is worth: objectives parsed from a short spec, all "higher is better".

Spec syntax (the ``--objective`` value of ``molvae optimize``):

* ``qed``, ``logp``, ``plogp``, ``mw``, ... (any of :data:`molvae.chem.PROPERTY_NAMES`):
  maximize that property; ``sa`` is minimized (its score is ``-SA``).
* ``max:PROP`` / ``min:PROP``: choose the direction explicitly (``min:mw``).
* ``PROP_range:LOW:HIGH[:WIDTH]``: 1 inside ``[LOW, HIGH]``, a Gaussian decay of scale
  ``WIDTH`` outside (default: half the range), e.g. ``mw_range:300:450``.
* ``similarity:SMILES``: Tanimoto similarity (Morgan r=2) to a target molecule.
* ``package.module:function``: a user oracle, ``function(smiles: str) -> float``.
* ``FILE.yaml``: a multi-property objective (MPO)::

      combine: product          # sum (weighted sum) or product (product of value**weight)
      terms:
        - {name: qed, weight: 1}
        - {name: sa, weight: 0.5, transform: sigmoid, low: 4.5, high: 2.5}
        - {name: "similarity:c1ccccc1O", weight: 2}

  ``name`` is any spec above. ``transform`` maps the term's raw value (SA itself, not -SA)
  to a desirability in [0, 1]: ``linear`` (ramp from 0 at ``low`` to 1 at ``high``),
  ``sigmoid`` (smooth step, 0.05 at ``low`` and 0.95 at ``high``; ``low > high`` reverses
  it) or ``range`` (as ``PROP_range``). ``product`` needs every term in [0, 1]: a transform,
  or a term that is bounded by nature (qed, similarity, a range).

A score that cannot be computed is NaN, never 0, so a failure can never look like a result.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError, load_yaml

log = logging.getLogger(__name__)

MINIMIZED = frozenset({"sa"})
BOUNDED_PROPERTIES = frozenset({"qed"})
TRANSFORMS = ("linear", "sigmoid", "range")
TERM_KEYS = {"name", "weight", "transform", "low", "high", "width"}
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Desirability:
    """Maps a raw value to [0, 1] so that different properties can be multiplied or added.

    Attributes:
        kind: ``linear``, ``sigmoid`` or ``range`` (see the module docstring).
        low, high: the value that maps to 0 and to 1 (``range``: the interval that maps to 1).
        width: ``range`` only: the decay scale outside the interval.
    """

    kind: str
    low: float
    high: float
    width: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in TRANSFORMS:
            raise ConfigError(f"transform must be one of {', '.join(TRANSFORMS)}, "
                              f"got '{self.kind}'")
        if self.kind == "range" and self.low > self.high:
            raise ConfigError(f"range transform needs low <= high, got {self.low} > {self.high}")
        if self.kind != "range" and self.low == self.high:
            raise ConfigError(f"{self.kind} transform needs low != high, both are {self.low}")
        if self.width is not None and self.width <= 0:
            raise ConfigError(f"range width must be > 0, got {self.width}")

    def __call__(self, value: float) -> float:
        if math.isnan(value):
            return math.nan
        if self.kind == "linear":
            return min(1.0, max(0.0, (value - self.low) / (self.high - self.low)))
        if self.kind == "sigmoid":
            steepness = 2 * math.log(19) / (self.high - self.low)
            middle = (self.low + self.high) / 2
            return 1.0 / (1.0 + math.exp(min(700.0, -steepness * (value - middle))))
        width = self.width or max((self.high - self.low) / 2, 1e-6)
        distance = max(self.low - value, value - self.high, 0.0)
        return math.exp(-0.5 * (distance / width) ** 2)


class Objective(ABC):
    """A score for one molecule; higher is better. Subclasses are small and typed.

    Attributes:
        name: the spec it was parsed from (for tables and logs).
        bounded: its scores lie in [0, 1] (it may be a factor of a product).
        needs: the property columns it reads; None when it needs more than the properties
            (a structure, a user function), so it cannot be computed from a data table.
    """

    name: str
    bounded: bool = False
    needs: frozenset[str] | None = None

    @abstractmethod
    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        """The raw measurement (e.g. SA itself), what a desirability transform reads."""

    def score(self, smiles: str, props: Mapping[str, float]) -> float:
        """The oriented score (higher is better); NaN when it cannot be computed."""
        return self.value(smiles, props)

    @property
    def surrogate_property(self) -> tuple[str, float] | None:
        """(property, sign) when the score is sign * one property, so a property regressor
        trained by ``molvae regress`` can stand in for it; None otherwise."""
        return None


class PropertyObjective(Objective):
    """One property of :func:`molvae.chem.properties`, maximized, minimized or kept in a range."""

    def __init__(self, prop: str, sign: float = 1.0, transform: Desirability | None = None,
                 name: str | None = None) -> None:
        if prop not in chem.PROPERTY_NAMES:
            raise ConfigError(f"unknown property '{prop}' (properties: "
                              f"{', '.join(chem.PROPERTY_NAMES)})")
        self.prop, self.sign, self.transform = prop, sign, transform
        self.name = name or prop
        self.bounded = transform is not None or (prop in BOUNDED_PROPERTIES and sign > 0)
        self.needs = frozenset({prop})

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        return float(props.get(self.prop, math.nan))

    def score(self, smiles: str, props: Mapping[str, float]) -> float:
        raw = self.value(smiles, props)
        return self.transform(raw) if self.transform else self.sign * raw

    @property
    def surrogate_property(self) -> tuple[str, float] | None:
        return None if self.transform else (self.prop, self.sign)


class SimilarityObjective(Objective):
    """Tanimoto similarity (Morgan r=2, 1024 bits) to a target molecule."""

    bounded = True

    def __init__(self, target: str) -> None:
        canonical = chem.canonical_smiles(target)
        if canonical is None:
            raise ConfigError(f"similarity target '{target}' is not a valid SMILES")
        self.target = canonical
        self.name = f"similarity:{canonical}"

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        return chem.similarity(smiles, self.target)


class CallableObjective(Objective):
    """A Python callable ``function(smiles: str) -> float`` (e.g. from a notebook). An error
    or a non-numeric result scores NaN (logged once): one bad molecule does not end a run."""

    def __init__(self, function: Callable[[str], float], name: str | None = None) -> None:
        if not callable(function):
            raise ConfigError(f"objective {function!r} is not callable")
        self.function, self._warned = function, False
        self.name = name or getattr(function, "__name__", type(function).__name__)

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        try:
            return float(self.function(smiles))
        except Exception as err:  # noqa: BLE001 -- any user error must become NaN, not a crash
            if not self._warned:
                log.warning("objective %s failed on %s: %s (scored NaN; further failures are "
                            "not logged)", self.name, smiles, err)
                self._warned = True
            return math.nan


class FunctionObjective(CallableObjective):
    """A user oracle ``package.module:function`` (a :class:`CallableObjective` found by path)."""

    def __init__(self, path: str) -> None:
        module_name, _, attribute = path.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attribute, None)
        except ImportError as err:
            raise ConfigError(f"objective '{path}': cannot import module '{module_name}' "
                              f"({err})") from None
        if not callable(function):
            raise ConfigError(f"objective '{path}': module '{module_name}' has no function "
                              f"'{attribute}'")
        super().__init__(function, path)


@dataclass(frozen=True)
class Term:
    """One weighted part of a multi-property objective."""

    objective: Objective
    weight: float = 1.0
    transform: Desirability | None = None

    def score(self, smiles: str, props: Mapping[str, float]) -> float:
        if self.transform is None:
            return self.objective.score(smiles, props)
        return self.transform(self.objective.value(smiles, props))

    @property
    def bounded(self) -> bool:
        return self.transform is not None or self.objective.bounded


class CombinedObjective(Objective):
    """Weighted sum (``sum w_i s_i``) or product (``prod s_i ** w_i``) of terms; NaN if any is."""

    def __init__(self, terms: Sequence[Term], combine: str, name: str) -> None:
        self.terms, self.combine, self.name = list(terms), combine, name
        self.bounded = combine == "product" or (
            all(t.bounded and t.weight >= 0 for t in terms) and sum(t.weight for t in terms) <= 1)
        needed = [t.objective.needs for t in terms]
        self.needs = None if any(n is None for n in needed) else frozenset().union(*needed)

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        parts = [t.score(smiles, props) for t in self.terms]
        if any(math.isnan(p) for p in parts):
            return math.nan
        if self.combine == "sum":
            return float(sum(t.weight * p for t, p in zip(self.terms, parts, strict=True)))
        return float(math.prod(p ** t.weight for t, p in zip(self.terms, parts, strict=True)))


def _number(text: str, what: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"objective '{spec}': {what} must be a number, got '{text}'") from None


def _parse_range(spec: str) -> PropertyObjective:
    head, *numbers = spec.split(":")
    prop = head[: -len("_range")]
    if len(numbers) not in (2, 3):
        raise ConfigError(f"objective '{spec}': expected {prop}_range:LOW:HIGH[:WIDTH]")
    low, high = (_number(n, w, spec) for n, w in zip(numbers, ("LOW", "HIGH"), strict=False))
    width = _number(numbers[2], "WIDTH", spec) if len(numbers) == 3 else None
    try:
        transform = Desirability("range", low, high, width)
    except ConfigError as err:
        raise ConfigError(f"objective '{spec}': {err}") from None
    return PropertyObjective(prop, transform=transform, name=spec)


def _parse_term(entry: object, where: str) -> Term:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{where}: each term needs a 'name' (an objective spec), got {entry!r}")
    unknown = set(entry) - TERM_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)} in term '{entry['name']}' "
                          f"(valid: {sorted(TERM_KEYS)})")
    weight = _number(str(entry.get("weight", 1.0)), "weight", where)
    transform = None
    if "transform" in entry:
        missing = [k for k in ("low", "high") if k not in entry]
        if missing:
            raise ConfigError(f"{where}: term '{entry['name']}' has a transform but no "
                              f"{' or '.join(missing)}")
        try:
            transform = Desirability(str(entry["transform"]),
                                     _number(str(entry["low"]), "low", where),
                                     _number(str(entry["high"]), "high", where),
                                     _number(str(entry["width"]), "width", where)
                                     if "width" in entry else None)
        except ConfigError as err:
            raise ConfigError(f"{where}: term '{entry['name']}': {err}") from None
    return Term(parse_objective(str(entry["name"])), weight, transform)


def _parse_file(path: Path) -> CombinedObjective:
    data = load_yaml(path)
    unknown = set(data) - {"combine", "terms"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)} (valid: combine, terms)")
    combine = str(data.get("combine", "sum"))
    if combine not in ("sum", "product"):
        raise ConfigError(f"{path}: combine must be 'sum' or 'product', got '{combine}'")
    entries = data.get("terms")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'terms' must be a non-empty list of {{name, weight, ...}}")
    terms = [_parse_term(e, f"{path}: terms[{i}]") for i, e in enumerate(entries)]
    if combine == "product":
        for term in terms:
            if not term.bounded:
                raise ConfigError(f"{path}: term '{term.objective.name}' is not in [0, 1]; "
                                  f"give it a transform to combine it by product")
            if term.weight <= 0:
                raise ConfigError(f"{path}: term '{term.objective.name}' needs a weight > 0 in "
                                  f"a product, got {term.weight}")
    return CombinedObjective(terms, combine, name=path.name)


def parse_objective(spec: str) -> Objective:
    """Build an objective from its spec (see the module docstring); a bad spec is a ConfigError.

    Args:
        spec: e.g. ``qed``, ``min:sa``, ``mw_range:300:450``, ``similarity:CCO``,
            ``mypackage.oracles:dock``, ``mpo.yaml``.
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError("objective is empty")
    if spec.endswith((".yaml", ".yml")):
        return _parse_file(Path(spec))
    head, _, rest = spec.partition(":")
    if head in chem.PROPERTY_NAMES and not rest:
        return PropertyObjective(head, -1.0 if head in MINIMIZED else 1.0)
    if head in ("max", "min"):
        return PropertyObjective(rest, 1.0 if head == "max" else -1.0, name=spec)
    if head.endswith("_range"):
        return _parse_range(spec)
    if head == "similarity":
        return SimilarityObjective(rest)
    if _IMPORT_PATH.match(spec):
        return FunctionObjective(spec)
    raise ConfigError(
        f"objective '{spec}' not understood: use a property ({', '.join(chem.PROPERTY_NAMES)}), "
        "max:PROP, min:PROP, PROP_range:LOW:HIGH, similarity:SMILES, package.module:function "
        "or an MPO .yaml file")


def score_table(objective: Objective, table: pd.DataFrame) -> np.ndarray | None:
    """Scores of a prepared table's molecules from its property columns, without RDKit work.

    Returns None when the objective needs more than the columns the table has (a structure
    comparison, a user function): those scores would cost oracle calls.
    """
    if objective.needs is None or not objective.needs <= set(table.columns):
        return None
    columns = sorted(objective.needs)
    rows = table[["smiles", *columns]].to_dict("records")
    return np.array([objective.score(r["smiles"], r) for r in rows], dtype=float)
