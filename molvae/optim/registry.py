"""The optimization methods by name: each one's optimizer class and options dataclass.

Adding a method is one new module (an options dataclass, declared once with its defaults and
help, and a :class:`~molvae.optim.search.LatentOptimizer` whose ``build`` reads it) plus one
line in :data:`METHODS`. Everything else reads this table: ``molvae optimize --method`` and
its ``--METHOD-OPTION`` flags, the YAML keys of a pipeline, :func:`molvae.optimize` and
``benchmarks/pmo.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from molvae.config import ConfigError
from molvae.optim.bo import BOOptions, TrustRegionBO
from molvae.optim.cmaes import CmaEs, CmaEsOptions
from molvae.optim.gradient import GradientAscent, GradientOptions
from molvae.optim.policy import PolicyOptions, PolicySearch
from molvae.optim.random_search import RandomOptions, RandomSearch
from molvae.optim.search import LatentOptimizer


@dataclass(frozen=True)
class Method:
    """A registered method: ``optimizer.build(problem, options)`` with ``options`` an
    instance of ``options``; ``summary`` is one line for help texts."""

    name: str
    optimizer: type[LatentOptimizer]
    options: type[Any]
    summary: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("policy", PolicySearch, PolicyOptions,
           "the decoder fine-tuned as a policy, with Graph GA crossover (the default)"),
    Method("cmaes", CmaEs, CmaEsOptions, "CMA-ES in the latent space"),
    Method("bo", TrustRegionBO, BOOptions, "trust-region Bayesian optimization in z"),
    Method("gradient", GradientAscent, GradientOptions,
           "gradient ascent in z on a differentiable surrogate"),
    Method("random", RandomSearch, RandomOptions, "prior samples: the baseline"),
)}
DEFAULT_METHOD = "policy"


def get_method(name: str) -> Method:
    """The method called ``name``; an unknown name is an error listing the known ones."""
    if name not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got '{name}'")
    return METHODS[name]


def method_options() -> dict[str, type[Any]]:
    """Each method's options dataclass, by name (the option blocks of a config)."""
    return {name: method.options for name, method in METHODS.items()}
