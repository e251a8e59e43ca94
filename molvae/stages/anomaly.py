"""The anomaly stage: an out-of-distribution score per molecule from the model's ELBO.

A VAE trained on a chemical space explains molecules from that space in few nats: the
reconstruction NLL of a molecule's tokens given z = mu (and the negative ELBO, NLL + KL) grows
for molecules unlike the training data. ``--score`` picks the column that ranks:
``nll_per_token`` (the default: independent of molecule size, which the totals mostly
measure), ``neg_elbo`` or ``nll``. With ``--reference`` (a prepared
folder or a molecule file of in-distribution molecules), each score also gets its
``percentile`` among the reference molecules' scores.

A VQ model (``molvae train --latent vq``) has no KL term: its ``neg_elbo`` is the decoder's
NLL plus ``code_nll``, -log p(codes) under its code prior, so a molecule scores high when its
codes are unusual, its tokens are, or both; ``nll_per_token`` and ``nll`` leave the codes out.

Output columns: smiles, reason, score, percentile (with --reference), the ELBO terms, input
columns. Unusable rows stay, with NaN scores and a reason. A molecule with tokens the model
never saw scores +inf (the decoder cannot write it: its likelihood is 0), percentile 100, with
a reason naming the tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae.config import ConfigError, batch_size_option, device_option, model_option, option
from molvae.data.manifest import check_prepared
from molvae.model.ops import SCORES, elbo_terms
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE
from molvae.stages.molecules import (
    check_table_path,
    read_molecules,
    with_inputs,
    write_molecules,
)
from molvae.tracking import Tracker, local_model_dir

REFERENCE_MAX = 2000


@dataclass
class AnomalyConfig:
    """Options of ``molvae anomaly``."""

    inputs: list[str] = option(help="molecule files (CSV/TSV/Parquet/SMI/SDF) or SMILES",
                               positional=True)
    model: str = model_option()
    out: Path = option(Path("anomaly.csv"), help="output table: .csv, .csv.gz, .tsv, .parquet "
                       "or .sdf")
    score: str = option("nll_per_token", help=f"the score column: {', '.join(SCORES)} (a VQ "
                        "model's neg_elbo adds the codes' NLL under its code prior)")
    reference: Path | None = option(None, help="in-distribution molecules for percentiles: a "
                                    "prepared folder (its val split) or a molecule file")
    smiles_col: str | None = option(None, help="SMILES column of the input tables")
    batch_size: int = batch_size_option(512)
    device: str = device_option()

    def validate(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"score must be one of {', '.join(SCORES)}, got '{self.score}'")
        check_table_path(self.out)


@dataclass
class AnomalyResult:
    """Where the scores went, and their summary."""

    out: Path
    n: int
    n_scored: int
    median_score: float
    score: str

    def summary(self) -> str:
        return (f"scored {self.n_scored} of {self.n} molecules ({self.score}, median "
                f"{self.median_score:.3f}; higher is more unusual) into {self.out}")


def reference_scores(model: SelfiesVAE, reference: Path, score: str, batch_size: int
                     ) -> np.ndarray:
    """Sorted finite scores of at most REFERENCE_MAX reference molecules."""
    if reference.is_dir():
        check_prepared(reference, ["val.parquet"])
        smiles = pd.read_parquet(reference / "val.parquet")["smiles"].tolist()
    else:
        smiles = read_molecules([str(reference)])["input"].tolist()
    terms = elbo_terms(model, smiles[:REFERENCE_MAX], batch_size)
    values = np.asarray(getattr(terms, score), dtype=float)
    return np.sort(values[np.isfinite(values)])


def run(config: AnomalyConfig, tracker: Tracker | None = None) -> AnomalyResult:
    """Score every input molecule, write the table, log the score distribution."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    molecules = read_molecules(config.inputs, config.smiles_col)
    model = load_model(local_model_dir(config.model), config.device)
    terms = elbo_terms(model, molecules["input"].tolist(), config.batch_size)
    table = terms.table(latents=False)
    values = table[config.score].to_numpy(dtype=float)
    table.insert(2, "score", values)
    if config.reference is not None:
        known = reference_scores(model, config.reference, config.score, config.batch_size)
        if not len(known):
            raise ValueError(f"reference {config.reference}: no molecule could be scored")
        percentile = 100.0 * np.searchsorted(known, values, side="right") / len(known)
        table.insert(3, "percentile", np.where(np.isnan(values), np.nan, percentile))
    table = with_inputs(table, molecules)
    write_molecules(table, config.out)
    scored = values[~np.isnan(values)]  # +inf: tokens the model never saw, the most unusual
    finite = scored[np.isfinite(scored)]
    median = float(np.median(scored)) if len(scored) else float("nan")
    tracker.log_metrics({"n": len(table), "n_scored": len(scored), "median_score": median,
                         "mean_score": float(finite.mean()) if len(finite) else None,
                         "seconds": time.perf_counter() - started})
    tracker.set_tags({"score": config.score})
    tracker.log_artifact(config.out)
    return AnomalyResult(Path(config.out), len(table), len(scored), median, config.score)
