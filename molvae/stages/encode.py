"""The encode stage: molecules → latent posterior (mu, sigma) and the ELBO terms, one row each.

Per input molecule: ``smiles`` (canonical), ``reason`` (why a row is unusable), ``neg_elbo``,
``nll`` (reconstruction negative log-likelihood of its tokens given z = mu, teacher forced),
``nll_per_token``, ``kl``, ``n_tokens``, ``unknown_tokens`` (outside the vocabulary), then
``mu_0..mu_{d-1}`` and ``sigma_0..sigma_{d-1}``, then the input's other columns. Unusable
rows stay, with NaN numbers. ``molvae decode`` reads the ``mu_*`` columns back.

A VQ model (``molvae train --latent vq``) writes each molecule's codes instead,
``code_0..code_{M-1}`` (whole numbers below the codebook size K; M·log2 K bits per molecule),
and ``code_nll``, -log p(codes) under its code prior, in place of ``kl``; ``neg_elbo`` is
``nll + code_nll``. ``molvae decode`` reads the codes back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from molvae.config import batch_size_option, device_option, model_option, option
from molvae.model.ops import CodeTerms, elbo_terms
from molvae.model.store import load_model
from molvae.stages.molecules import (
    check_table_path,
    read_molecules,
    with_inputs,
    write_molecules,
)
from molvae.tracking import Tracker, local_model_dir


@dataclass
class EncodeConfig:
    """Options of ``molvae encode``: each molecule's latent mean and spread, or a VQ model's
    codes."""

    inputs: list[str] = option(help="molecule files (CSV/TSV/Parquet/SMI/SDF) or SMILES",
                               positional=True)
    model: str = model_option()
    out: Path = option(Path("latents.parquet"), help="output table: .parquet, .csv, .csv.gz, "
                       ".tsv or .sdf")
    smiles_col: str | None = option(None, help="SMILES column of the input tables "
                                    "(default: detected)")
    batch_size: int = batch_size_option(512)
    device: str = device_option()

    def validate(self) -> None:
        check_table_path(self.out)


@dataclass
class EncodeResult:
    """Where the latents went and how many molecules could be encoded."""

    out: Path
    n: int
    n_encoded: int
    mean_neg_elbo: float
    seconds: float
    bits: float | None = None  # a VQ model's code size, M·log2 K bits per molecule

    def summary(self) -> str:
        codes = "" if self.bits is None else f"codes of {self.bits:g} bits per molecule, "
        return (f"encoded {self.n_encoded} of {self.n} molecules into {self.out} ({codes}"
                f"mean negative ELBO {self.mean_neg_elbo:.2f} nats, {self.seconds:.1f} s)")


def run(config: EncodeConfig, tracker: Tracker | None = None) -> EncodeResult:
    """Encode every input molecule, write the table, log counts and the mean ELBO terms."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    molecules = read_molecules(config.inputs, config.smiles_col)
    model = load_model(local_model_dir(config.model), config.device)
    terms = elbo_terms(model, molecules["input"].tolist(), config.batch_size)
    table = with_inputs(terms.table(latents=True), molecules)
    write_molecules(table, config.out)
    ok = np.isfinite(terms.nll)  # not NaN (no molecule) nor +inf (tokens it never saw)
    encoded = int(ok.sum())
    mean = float(terms.neg_elbo[ok].mean()) if encoded else float("nan")
    seconds = time.perf_counter() - started
    bits = terms.bits if isinstance(terms, CodeTerms) else None
    tracker.log_metrics({"n": len(table), "n_encoded": encoded, "mean_neg_elbo": mean,
                         "mean_nll": float(terms.nll[ok].mean()) if encoded else None,
                         "mean_kl": float(np.nanmean(terms.kl)) if encoded else None,
                         **({} if bits is None else {"bits_per_molecule": bits})})
    tracker.log_artifact(config.out)
    return EncodeResult(Path(config.out), len(table), encoded, mean, seconds, bits)
