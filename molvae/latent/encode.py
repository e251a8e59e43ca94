"""Latent means of data sets, cached; and the property columns they are paired with.

Encodings are cached as ``.npy`` files keyed by a hash of the model weights and of the split
file, so rerunning a stage does not re-encode.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from molvae.config import ConfigError
from molvae.data.manifest import check_prepared
from molvae.io import atomic_path, file_digest
from molvae.model.vae import SelfiesVAE

log = logging.getLogger(__name__)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's weights: equal for a folder and its MLflow copy, new after training."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encode_split(model: SelfiesVAE, prepared_dir: str | Path, split: str,
                 cache_dir: str | Path | None = None,
                 batch_size: int = 512) -> tuple[np.ndarray, pd.DataFrame]:
    """Latent means μ of one prepared split, with the split's table row-aligned to them.

    Args:
        model: the trained VAE.
        prepared_dir: the output folder of ``molvae prep``.
        split: ``train``, ``val`` or ``test``.
        cache_dir: folder for cached encodings; None encodes every time.
        batch_size: molecules per encoder batch.

    Returns:
        (mu, table): float32 [N, latent_dim] and the split's DataFrame (N rows). A molecule the
        model could not tokenize has a row of NaN in ``mu``.
    """
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"prepared split not found: {path} (run `molvae prep` first)")
    check_prepared(prepared_dir, [f"{split}.parquet"])  # splits of one prep run, not a mix
    table = pd.read_parquet(path)
    cached = None
    if cache_dir is not None:
        key = f"{model_fingerprint(model)[:16]}-{file_digest(path)[:16]}"
        cached = Path(cache_dir) / f"{split}-{key}.npy"
        if cached.is_file():
            mu = np.load(cached, allow_pickle=False)
            if mu.shape[0] == len(table):
                log.info("latents of %s from cache %s", split, cached)
                return mu, table
    model.eval()
    mu, _ = model.encode(table["smiles"].tolist(), batch_size=batch_size)
    mu = np.asarray(mu, dtype=np.float32)
    if cached is not None:
        with atomic_path(cached) as tmp, open(tmp, "wb") as handle:
            np.save(handle, mu)
    return mu, table


def property_values(table: pd.DataFrame, name: str, where: str = "data",
                    required: bool = True) -> np.ndarray:
    """A numeric column as float64 (NaN where missing); a missing or text column is an error.

    Properties are plain column names, so a user's own measured column (kept by ``prep``)
    works exactly like the computed ones. With ``required`` a column without any value is
    an error too.
    """
    if name not in table.columns:
        numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        raise ConfigError(f"property '{name}' is not a column of {where} "
                          f"(numeric columns: {', '.join(numeric)})")
    column = table[name]
    if not pd.api.types.is_numeric_dtype(column):
        raise ConfigError(f"property '{name}' in {where} is not numeric (dtype {column.dtype})")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if required and not np.isfinite(values).any():
        raise ConfigError(f"property '{name}' in {where} has no values (all missing)")
    return values


def usable_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of rows with a finite latent vector and a finite target."""
    return np.isfinite(z).all(axis=1) & np.isfinite(y)


def encoded_target(z: np.ndarray, table: pd.DataFrame, name: str, where: str,
                   required: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(z, y, skipped) for a property: rows without a latent or a target value dropped."""
    y = property_values(table, name, where, required)
    keep = usable_rows(z, y)
    return z[keep], y[keep], int((~keep).sum())


def subsample(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` (all of them if ``size`` ≥ n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
