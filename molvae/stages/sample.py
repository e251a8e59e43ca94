"""The sample stage: draw molecules from a trained model's prior into a CSV.

Each batch uses its own seed (``seed + batch index``), so a run is reproducible for a given
seed and batch size, and the progress bar can advance batch by batch. A conditional model
(trained with ``--condition``) generates for the targets of ``--condition qed=0.9,logp=2.5``;
conditions left out take their training mean.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from molvae import chem
from molvae.config import ConfigError, batch_size_option, device_option, model_option, option
from molvae.model.prior import PRIORS
from molvae.model.store import load_model
from molvae.stages.molecules import write_molecules
from molvae.tracking import Tracker, local_model_dir

log = logging.getLogger(__name__)


@dataclass
class SampleConfig:
    """Options of ``molvae sample``."""

    model: str = model_option()
    n: int = option(1000, help="number of molecules to generate", aliases=("-n",))
    out: Path = option(Path("samples.csv"), help="output CSV (columns smiles, valid)")
    temperature: float = option(1.0, help="softmax temperature (< 1: safer, > 1: more diverse)")
    prior: str = option("fitted", help="where z comes from: fitted (fitted to the latents of "
                        "held-out molecules: a Gaussian, a mixture, or their posteriors; the "
                        "model card says which) or standard (N(0, I)); a VQ model: "
                        "fitted draws codes from its code prior, standard uniformly")
    seed: int | None = option(0, help="random seed (empty: not reproducible)")
    batch_size: int = batch_size_option(1024)
    device: str = device_option()
    condition: list[str] = option([], help="targets NAME=VALUE for a conditional model "
                                  "(trained with --condition), e.g. qed=0.9,logp=2.5")

    def targets(self) -> dict[str, float]:
        """``condition`` as {name: value}."""
        found: dict[str, float] = {}
        for item in self.condition:
            name, sep, value = (part.strip() for part in item.partition("="))
            try:
                number = float(value)
            except ValueError:
                number = None
            if not sep or not name or number is None:
                raise ConfigError(f"condition must be NAME=VALUE (a number), got '{item}'")
            if name in found:
                raise ConfigError(f"condition names '{name}' twice")
            found[name] = number
        return found

    def validate(self) -> None:
        if self.n < 1:
            raise ConfigError(f"n must be >= 1, got {self.n}")
        if not math.isfinite(self.temperature) or self.temperature <= 0:  # nan: torch error
            raise ConfigError(f"temperature must be a finite number > 0, got "
                              f"{self.temperature}")
        if self.prior not in PRIORS:
            raise ConfigError(f"prior must be one of {', '.join(PRIORS)}, got '{self.prior}'")
        self.targets()


@dataclass
class SampleResult:
    """Where the molecules went and how good they are."""

    out: Path
    n: int
    validity: float
    uniqueness: float
    seconds: float

    def summary(self) -> str:
        return (f"sampled {self.n} molecules into {self.out}: validity {self.validity:.3f}, "
                f"uniqueness {self.uniqueness:.3f} ({self.seconds:.1f} s)")

    def headline(self) -> dict[str, float]:
        """The share of valid and of unique molecules among those drawn."""
        return {"validity": self.validity, "uniqueness": self.uniqueness}


def run(config: SampleConfig, tracker: Tracker | None = None) -> SampleResult:
    """Generate ``config.n`` molecules, mark which RDKit accepts, write the CSV, log metrics."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    model = load_model(local_model_dir(config.model), config.device)
    targets = config.targets()
    known = model.config.condition_names
    unknown = [k for k in targets if k not in known]
    if unknown:
        raise ConfigError(f"{config.model} was not trained on condition(s) {', '.join(unknown)} "
                          + (f"(its conditions: {', '.join(known)})" if known else
                             "(it is not a conditional model: train one with --condition)"))
    if known and not targets:
        log.info("no --condition given: sampling at the training means of %s", ", ".join(known))
    smiles: list[str | None] = []
    starts = range(0, config.n, config.batch_size)
    for index, start in enumerate(tqdm(starts, desc="sampling", unit="batch")):
        seed = None if config.seed is None else config.seed + index
        smiles.extend(model.sample(min(config.batch_size, config.n - start),
                                   temperature=config.temperature, seed=seed,
                                   batch_size=config.batch_size, prior=config.prior,
                                   conditions=targets or None))
    valid = [chem.to_mol(s) is not None for s in smiles]
    table = pd.DataFrame({"smiles": smiles, "valid": valid})
    write_molecules(table, config.out)
    n_valid = sum(valid)
    validity = n_valid / len(smiles)
    uniqueness = table.loc[table["valid"], "smiles"].nunique() / n_valid if n_valid else math.nan
    seconds = time.perf_counter() - started
    tracker.log_metrics({"n": len(smiles), "validity": validity, "uniqueness": uniqueness,
                         "mol_per_s": len(smiles) / seconds})
    tracker.log_artifact(config.out)
    return SampleResult(Path(config.out), len(smiles), validity, uniqueness, seconds)
