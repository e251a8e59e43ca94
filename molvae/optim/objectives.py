"""What a molecule is worth: objectives, all "higher is better".

A property, a similarity, a user's Python function, or a weighted combination of these;
:mod:`molvae.optim.objective_spec` builds one from its short text. A score that cannot be
computed is NaN, never 0, so a failure can never look like a result.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import logging
import math
import numbers
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError

log = logging.getLogger(__name__)

BOUNDED_PROPERTIES = frozenset({"qed"})
TRANSFORMS = ("linear", "sigmoid", "range")


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

    def measured(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        """:meth:`value` and why it is NaN ('' when it is not, or nobody knows): the oracle
        records the reason, so a broken objective is reported as such, not as a bad model."""
        return self.value(smiles, props), ""

    def scored(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        """:meth:`score` and why it is NaN (see :meth:`measured`)."""
        return self.score(smiles, props), ""

    @property
    def fingerprint(self) -> str | None:
        """Everything a score depends on (the spec, the code or file that defines it), so a
        rerun reuses recorded oracle calls only of exactly this objective; None when that
        cannot be known (code without a source), and then nothing recorded is reused."""
        return self.name

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


def real_number(result: object) -> float | None:
    """``result`` as a float when it is a real number (a Python or NumPy number, a 0-d array
    or tensor), else None: ``float("0.5")`` or ``float(True)``-style coercion of whatever a
    function returns would turn a string or a status code into a score."""
    if isinstance(result, numbers.Real):
        return float(result)
    item = getattr(result, "item", None)
    if getattr(result, "ndim", None) == 0 and callable(item):
        value = item()
        return float(value) if isinstance(value, numbers.Real) else None
    return None


def _source_digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


class CallableObjective(Objective):
    """A Python callable ``function(smiles: str) -> float`` (e.g. from a notebook). An error
    or a result that is not a real number scores NaN with the reason (the oracle records and
    reports it): one bad molecule does not end a run, a function that fails on every molecule
    of the first batch does (see :class:`~molvae.optim.oracle.Oracle`)."""

    def __init__(self, function: Callable[[str], float], name: str | None = None) -> None:
        if not callable(function):
            raise ConfigError(f"objective {function!r} is not callable")
        self.function = function
        self.name = name or str(getattr(function, "__name__", type(function).__name__))

    def _call(self, smiles: str) -> tuple[float, str]:
        try:
            result = self.function(smiles)
        except Exception as err:  # any user error must become NaN, not a crash
            return math.nan, f"objective '{self.name}' raised {type(err).__name__}: {err}"
        value = real_number(result)
        if value is None:
            shown = repr(result)
            shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
            return math.nan, (f"objective '{self.name}' returned {type(result).__name__} "
                              f"{shown}, not a real number")
        return value, ""

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        return self._call(smiles)[0]

    def measured(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        return self._call(smiles)

    def scored(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        return self._call(smiles)

    @property
    def fingerprint(self) -> str | None:
        """The function's module, name, source text and the values bound to it (closure,
        defaults, partial arguments, its object's state): two closures of one source with
        different targets are different objectives. None without a source to read, or with
        bound values that cannot be written out."""
        target = _unwrapped(self.function)
        try:
            source = inspect.getsource(target if inspect.isroutine(target) or
                                       inspect.isclass(target) else type(target))
            state = _bound_state(self.function)
        except Exception:  # no source or an odd repr: reuse nothing, never fail
            return None
        return _source_digest(_defining_module(target),
                              getattr(target, "__qualname__", self.name), source, state)


def _bound_state(function: object) -> str:
    """The values a callable carries besides its code, written out (their repr)."""
    parts = []
    while isinstance(function, functools.partial):
        parts.append(repr((function.args, function.keywords)))
        function = function.func
    if inspect.ismethod(function):
        parts.append(repr(function.__self__))
        function = function.__func__
    elif not inspect.isroutine(function) and not inspect.isclass(function):
        parts.append(repr(getattr(function, "__dict__", function)))
    for cell in getattr(function, "__closure__", None) or ():
        parts.append(repr(cell.cell_contents))
    parts.append(repr((getattr(function, "__defaults__", None),
                       getattr(function, "__kwdefaults__", None))))
    return "\0".join(parts)


def _unwrapped(function: object) -> object:
    """What a partial or a bound method ends up calling."""
    while isinstance(function, functools.partial):
        function = function.func
    return getattr(function, "__func__", function)


def _defining_module(function: object) -> str:
    """The module that defines ``function`` (for a bound builtin like ``"".join``: its
    object's type's module, ``builtins``)."""
    module = getattr(function, "__module__", None)
    if module is None:
        module = type(getattr(function, "__self__", function)).__module__
    return str(module)


def _standard_library(module: str) -> bool:
    return module.partition(".")[0] in sys.stdlib_module_names


class FunctionObjective(CallableObjective):
    """A user oracle ``package.module:function`` (a :class:`CallableObjective` found by path).

    Importing the module runs its code, and the function is then called with every molecule:
    an objective spec can sit in a YAML file that is passed around as data, so only the user's
    own code is accepted, never the standard library (``os:system`` would run each SMILES as
    a shell command; ``antigravity:x`` would act on import, so the check comes first).
    """

    def __init__(self, path: str) -> None:
        module_name, _, attribute = path.partition(":")
        if _standard_library(module_name):
            raise ConfigError(self._refusal(path, module_name))
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(f"objective '{path}': cannot import module '{module_name}' "
                              f"({err})") from None
        function = getattr(module, attribute, None)
        if not callable(function):
            raise ConfigError(f"objective '{path}': module '{module_name}' has no function "
                              f"'{attribute}'")
        defined_in = _defining_module(_unwrapped(function))
        if _standard_library(defined_in):  # e.g. ``from os import system`` in a user module
            raise ConfigError(self._refusal(path, defined_in))
        self.source = getattr(module, "__file__", None)
        super().__init__(function, path)

    @staticmethod
    def _refusal(path: str, module: str) -> str:
        return (f"objective '{path}': '{module}' is part of Python's standard library, not an "
                "objective; an import path (package.module:function) must name your own "
                "function, because it is imported and called with every molecule")

    @property
    def fingerprint(self) -> str | None:
        """The path and the bytes of the module's source file (None when it has none)."""
        if not self.source or not Path(self.source).is_file():
            return None
        return _source_digest(self.name, hashlib.sha256(Path(self.source).read_bytes())
                              .hexdigest())


@dataclass(frozen=True)
class Term:
    """One weighted part of a multi-property objective."""

    objective: Objective
    weight: float = 1.0
    transform: Desirability | None = None

    def score(self, smiles: str, props: Mapping[str, float]) -> float:
        return self.scored(smiles, props)[0]

    def scored(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        """The term's score and why it is NaN ('' when it is not)."""
        if self.transform is None:
            return self.objective.scored(smiles, props)
        raw, why = self.objective.measured(smiles, props)
        return self.transform(raw), why

    @property
    def fingerprint(self) -> str | None:
        inner = self.objective.fingerprint
        return None if inner is None else f"{self.weight!r}*{self.transform!r}({inner})"

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
        known = [n for n in needed if n is not None]
        self.needs = frozenset().union(*known) if len(known) == len(needed) else None

    def value(self, smiles: str, props: Mapping[str, float]) -> float:
        return self.scored(smiles, props)[0]

    def measured(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        return self.scored(smiles, props)

    def scored(self, smiles: str, props: Mapping[str, float]) -> tuple[float, str]:
        """The combination, or NaN with the first failing term's reason."""
        parts = [t.scored(smiles, props) for t in self.terms]
        for term, (part, why) in zip(self.terms, parts, strict=True):
            if math.isnan(part):
                return math.nan, f"term '{term.objective.name}': {why or 'NaN'}"
        values = [part for part, _ in parts]
        if self.combine == "sum":
            total = float(sum(t.weight * p for t, p in zip(self.terms, values, strict=True)))
        else:
            total = float(math.prod(p ** t.weight
                                    for t, p in zip(self.terms, values, strict=True)))
        return total, "" if not math.isnan(total) else \
            f"{self.combine} of the terms is NaN (check the weights)"

    @property
    def fingerprint(self) -> str | None:
        """The combination and its terms (weights, transforms, their objectives), not the
        file's name: a renamed copy is the same objective, an edited weight is not."""
        terms = [t.fingerprint for t in self.terms]
        known = [t for t in terms if t is not None]
        return None if len(known) < len(terms) else f"{self.combine}[{'; '.join(known)}]"



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
