"""The decode stage: latent vectors → molecules, the inverse of ``molvae encode``.

Reads a CSV/TSV/Parquet table with columns ``z_0 … z_{d-1}`` (or ``mu_0 …``, as ``molvae
encode`` writes them), e.g. latents edited in a notebook, and decodes each row greedily (or by
sampling at ``--temperature`` with ``--no-greedy``). Output: ``smiles``, ``valid``, and, when
the input had a ``smiles`` column, ``input_smiles`` and ``reconstructed``; then the input's
other non-latent columns. A row with a missing or infinite value decodes to nothing, with a
reason.

A VQ model (``molvae train --latent vq``) reads codes: columns ``code_0 … code_{M-1}``, whole
numbers below its codebook size, as ``molvae encode`` writes them (a table of z_*/mu_* vectors
is snapped to the nearest codes).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import ConfigError, batch_size_option, device_option, model_option, option
from molvae.io import read_table
from molvae.model.store import load_model
from molvae.model.vq import VQVAE
from molvae.stages.molecules import check_table_path, write_molecules
from molvae.tracking import Tracker, local_model_dir

LATENT_PREFIXES = ("z", "mu")
# columns of `molvae encode` that describe the old encoding, not the decoded molecule
DERIVED = re.compile(r"^((z|mu|sigma|code)_\d+|neg_elbo|nll|nll_per_token|kl|code_nll|n_tokens|"
                     r"unknown_tokens|reason)$")


def latent_columns(table: pd.DataFrame, dim: int, where: str) -> list[str]:
    """``z_0..z_{dim-1}`` or ``mu_0..mu_{dim-1}``, whichever the table has (z first)."""
    for prefix in LATENT_PREFIXES:
        columns = [f"{prefix}_{i}" for i in range(dim)]
        if all(c in table.columns for c in columns):
            return columns
    raise ConfigError(f"{where}: expected columns z_0..z_{dim - 1} or mu_0..mu_{dim - 1} "
                      f"(this model's latent size is {dim}); columns: "
                      f"{', '.join(map(str, table.columns[:12]))}")


def code_rows(table: pd.DataFrame, model: VQVAE, where: str
              ) -> tuple[np.ndarray, list[str | None]] | None:
    """A VQ model's codes [N, M] from columns ``code_0..code_{M-1}`` (rows that cannot be
    decoded hold 0) and why each row cannot be decoded (None: it can); None when the table has
    no code columns."""
    m, k = model.codes, model.config.codebook_size
    columns = [f"code_{i}" for i in range(m)]
    if not all(c in table.columns for c in columns):
        if any(str(c).startswith("code_") for c in table.columns):
            raise ConfigError(f"{where}: this VQ model reads {m} codes, columns code_0..code_"
                              f"{m - 1}; columns: {', '.join(map(str, table.columns[:12]))}")
        return None
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    reasons: list[str | None] = []
    for row in values:
        bad = [c for c, v in zip(columns, row, strict=True)
               if not np.isfinite(v) or v != round(v) or not 0 <= v < k]
        reasons.append(f"not a code (a whole number 0..{k - 1}) in {', '.join(bad)}"
                       if bad else None)
    usable = np.array([r is None for r in reasons], dtype=bool)
    return np.where(usable[:, None], values, 0).astype(np.int64), reasons


def latent_problem(row: np.ndarray, columns: list[str]) -> str:
    """Why a latent row is not decoded: a missing value (empty, or not a number) or an
    infinite one, with the columns that hold it."""
    missing = [c for c, v in zip(columns, row, strict=True) if np.isnan(v)]
    if missing:
        return f"missing latent value in {', '.join(missing)}"
    infinite = [c for c, v in zip(columns, row, strict=True) if np.isinf(v)]
    return f"non-finite (infinite) latent value in {', '.join(infinite)}"


@dataclass
class DecodeConfig:
    """Options of ``molvae decode``."""

    latents: Path = option(help="table of latent vectors (CSV/TSV/Parquet)", positional=True)
    model: str = model_option()
    out: Path = option(Path("decoded.csv"), help="output table: .csv, .csv.gz, .tsv, .parquet "
                       "or .sdf")
    greedy: bool = option(True, help="most likely token at each step (--no-greedy: sample)")
    temperature: float = option(1.0, help="softmax temperature when sampling")
    seed: int | None = option(0, help="random seed when sampling")
    batch_size: int = batch_size_option(1024)
    device: str = device_option()

    def validate(self) -> None:
        if not np.isfinite(self.temperature) or self.temperature <= 0:  # nan: torch error
            raise ConfigError(f"temperature must be a finite number > 0, got "
                              f"{self.temperature}")
        check_table_path(self.out)


@dataclass
class DecodeResult:
    """Where the molecules went and how many are valid."""

    out: Path
    n: int
    n_valid: int
    reconstructed: float | None

    def summary(self) -> str:
        text = f"decoded {self.n} latent rows into {self.out}: {self.n_valid} valid molecules"
        if self.reconstructed is not None:
            text += f", {self.reconstructed:.1%} equal to their input molecule"
        return text


def run(config: DecodeConfig, tracker: Tracker | None = None) -> DecodeResult:
    """Decode every row of the latent table, write the molecules, log validity."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    table = read_table(config.latents)
    model = load_model(local_model_dir(config.model), config.device)
    vq = model if isinstance(model, VQVAE) else None
    codes = None if vq is None else code_rows(table, vq, str(config.latents))
    if vq is not None and codes is not None:
        reasons = codes[1]
        ok = np.array([r is None for r in reasons], dtype=bool)
        decoded = iter(vq.decode_codes(codes[0][ok], greedy=config.greedy,
                                       temperature=config.temperature, seed=config.seed,
                                       batch_size=config.batch_size))
    else:
        columns = latent_columns(table, model.latent_dim, str(config.latents))
        z = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
        ok = np.isfinite(z).all(axis=1)
        reasons = [None if good else latent_problem(row, columns)
                   for good, row in zip(ok, z, strict=True)]
        decoded = iter(model.decode(z[ok], greedy=config.greedy, temperature=config.temperature,
                                    seed=config.seed, batch_size=config.batch_size))
    smiles = [next(decoded) if good else None for good in ok]
    out = pd.DataFrame({"smiles": smiles, "valid": [chem.to_mol(s) is not None for s in smiles],
                        "reason": reasons})
    reconstructed = None
    if "smiles" in table.columns:
        out["input_smiles"] = table["smiles"].to_numpy()
        out["reconstructed"] = out["smiles"].notna() & (out["smiles"] == out["input_smiles"])
        usable = table["smiles"].notna().to_numpy() & ok
        reconstructed = float(out.loc[usable, "reconstructed"].mean()) if usable.any() else None
    keep = [c for c in table.columns if c not in out.columns and c != "smiles"
            and not DERIVED.match(str(c))]
    out = pd.concat([out, table[keep].reset_index(drop=True)], axis=1)
    write_molecules(out, config.out)
    n_valid = int(out["valid"].sum())
    tracker.log_metrics({"n": len(out), "n_valid": n_valid, "validity": n_valid / max(1, len(out)),
                         "reconstructed": reconstructed,
                         "seconds": time.perf_counter() - started})
    tracker.log_artifact(config.out)
    return DecodeResult(Path(config.out), len(out), n_valid, reconstructed)
