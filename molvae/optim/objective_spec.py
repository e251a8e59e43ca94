"""The objective spec: the short text (``--objective``, a YAML file) that names what to maximize.

Spec syntax (the ``--objective`` value of ``molvae optimize``):

* ``qed``, ``logp``, ``plogp``, ``mw``, ... (any of :data:`molvae.chem.PROPERTY_NAMES`):
  maximize that property; ``sa`` is minimized (its score is ``-SA``).
* ``max:PROP`` / ``min:PROP``: choose the direction explicitly (``min:mw``).
* ``PROP_range:LOW:HIGH[:WIDTH]``: 1 inside ``[LOW, HIGH]``, a Gaussian decay of scale
  ``WIDTH`` outside (default: half the range), e.g. ``mw_range:300:450``.
* ``similarity:SMILES``: Tanimoto similarity (Morgan r=2) to a target molecule.
* ``package.module:function``: a user oracle, ``function(smiles: str) -> float``. The module
  is imported (its code runs, as ``import`` would run it) and the function is called with
  every molecule, so it must be your own code: modules of the standard library (``os:system``,
  ``subprocess:call``, ``builtins:eval``) are refused, and a result that is not a real number
  is a failure naming the objective.
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

import math
from pathlib import Path

from molvae import chem
from molvae.config import ConfigError, is_import_path, load_yaml
from molvae.optim.objectives import (
    CombinedObjective,
    Desirability,
    FunctionObjective,
    Objective,
    PropertyObjective,
    SimilarityObjective,
    Term,
)

MINIMIZED = frozenset({"sa"})
TERM_KEYS = {"name", "weight", "transform", "low", "high", "width"}


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
    if not math.isfinite(weight):  # inf in a product scored every molecule 0, as if it "worked"
        raise ConfigError(f"{where}: term '{entry['name']}' needs a finite weight, got {weight}")
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
    if all(term.weight == 0 for term in terms):  # every score 0: nothing to optimize
        raise ConfigError(f"{path}: every term has weight 0; give at least one a nonzero weight")
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
    if is_import_path(spec):
        return FunctionObjective(spec)
    raise ConfigError(
        f"objective '{spec}' not understood: use a property ({', '.join(chem.PROPERTY_NAMES)}), "
        "max:PROP, min:PROP, PROP_range:LOW:HIGH, similarity:SMILES, package.module:function "
        "or an MPO .yaml file")
