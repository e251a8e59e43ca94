"""How an optimization runs: everything but the model, the objective and the output folder.

One declaration serves every caller: ``molvae optimize`` (whose config adds the model, the
objective and the output folder), pipelines, :func:`molvae.optimize` and the benchmarks. Each
method's own options are a block declared in the method's module and listed by
:mod:`molvae.optim.registry`; here they are ``methods[NAME]``, and as keys and flags
``NAME_OPTION`` / ``--NAME-OPTION`` (``cmaes_sigma``, ``policy_sigma``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from molvae import chem
from molvae.config import ConfigError, blocks, option
from molvae.optim.guards import Guards
from molvae.optim.registry import DEFAULT_METHOD, METHODS, get_method, method_options


@dataclass
class Settings:
    """Options of an optimization run (``molvae optimize`` less model, objective and out)."""

    RENAMED: ClassVar[dict[str, str]] = {  # keys before each method had a block of its own
        "sigma": "cmaes_sigma", "acquisition": "bo_acquisition",
        "trust_length": "bo_trust_length", "prior_weight": "gradient_prior_weight",
        "ascent_steps": "gradient_ascent_steps", "learning_rate": "gradient_learning_rate",
        "refit_every": "gradient_refit_every", "surrogate_epochs": "gradient_surrogate_epochs",
        "surrogate_hidden": "gradient_surrogate_hidden"}

    budget: int = option(1000, help="oracle calls: unique valid molecules scored; those already "
                         "in OUT/calls.csv from an earlier run of the same objective are reused, "
                         "not paid again, but still count", bounds="[1, inf)")
    method: str = option(DEFAULT_METHOD, help="optimizer: " + "; ".join(
        f"{m.name}, {m.summary}" for m in METHODS.values()))
    data: Path | None = option(None, help="prepared data folder: warm start, novelty, size guards")
    regress: Path | None = option(None, help="regress output folder: its surrogate climbs "
                                  "single-property objectives (gradient method)")
    start: str | None = option(None, help="constrained mode: SMILES of the molecule to improve")
    min_similarity: float = option(0.4, help="constrained mode: least Tanimoto similarity to "
                                   "--start of a solution", bounds="[0, 1]")
    radius: float = option(0.5, help="constrained mode: spread of the search around the start's "
                           "z", bounds="(0, inf)")
    batch_size: int = option(64, help="latent points proposed per step", bounds="[1, inf)")
    init_size: int = option(64, help="initial design scored by the oracle when no free labels",
                            bounds="[1, inf)")
    max_sa: float | None = option(Guards.max_sa, help="guard: largest SA score of a solution")
    max_ring_size: int | None = option(Guards.max_ring_size, help="guard: largest ring of a "
                                       "solution")
    max_heavy_atoms: int | None = option(Guards.max_heavy_atoms, help="guard: most heavy atoms "
                                         "(default: the training set's largest, with --data)")
    max_tokens: int | None = option(Guards.max_tokens, help="guard: most SELFIES tokens "
                                    "(default: the training set's longest)")
    pains: bool = option(Guards.pains, help="guard: reject PAINS alerts")
    radicals: bool = option(Guards.radicals, help="guard: reject molecules with unpaired "
                            "electrons")
    novel_only: bool = option(False, help="guard: molecules of the training set (--data) are "
                              "not solutions")
    methods: dict[str, Any] = blocks(method_options, help="each method's own options")
    patience: int = option(20, help="stop after this many steps without a new molecule",
                           bounds="[1, inf)")
    grid_size: int = option(24, help="top molecules drawn in grid.png (0 = none)")
    cache_dir: Path | None = option(None, help="latent cache folder (default OUT/cache)")
    seed: int = option(0, help="random seed")
    allow_degenerate: bool = option(False, help="succeed even when no solution was found "
                                    "(by default such a run fails with advice), and go on when "
                                    "the objective fails on all of the first batch")

    def validate(self) -> None:
        get_method(self.method)
        if self.novel_only and self.data is None:
            raise ConfigError("novel_only needs data (the prepared folder holding the training "
                              "set)")
        if self.start is not None and chem.canonical_smiles(self.start) is None:
            raise ConfigError(f"start '{self.start}' is not a valid SMILES")

    @property
    def method_options(self) -> Any:
        """The chosen method's options (its defaults when ``methods`` has none for it)."""
        chosen = self.methods.get(self.method)
        return chosen if chosen is not None else get_method(self.method).options()

    def guards(self) -> Guards:
        """The guards as set here; size limits left at None are filled in from the training
        set (or the model) by :func:`molvae.optim.optimize.optimize`."""
        return Guards(self.max_sa, self.max_ring_size, self.max_heavy_atoms, self.max_tokens,
                      self.pains, radicals=self.radicals)
