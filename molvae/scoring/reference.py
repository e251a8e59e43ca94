"""Reference sets reduced to what the metrics need, cached on disk by content.

A reference set (the MOSES test set, a prepared split) becomes :class:`ReferenceStats`: plain
arrays cached as ``.npz`` under a hash of its molecules, so scoring many files against the
same reference describes it once. FCD statistics and the training set for Novelty are cached
the same way.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae.io import atomic_path, write_table
from molvae.parallel import map_chunks
from molvae.scoring import fcd, metrics
from molvae.scoring.features import (
    FeatureOptions,
    ParsedSet,
    canonical_chunk,
    describe_set,
    parse_set,
)

log = logging.getLogger(__name__)

STATS_VERSION = 1


@dataclass
class ReferenceStats:
    """What the metrics need of a reference set; plain arrays, so it caches as ``.npz``."""

    n_molecules: int
    n_valid: int
    fingerprints: np.ndarray
    fragments: Counter
    scaffolds: Counter
    properties: pd.DataFrame
    counts: np.ndarray
    kl_descriptors: np.ndarray
    kl_similarity: np.ndarray

    def save(self, path: Path) -> None:
        arrays = {
            "sizes": np.array([self.n_molecules, self.n_valid]),
            "fingerprints": self.fingerprints, "counts": self.counts,
            "properties": self.properties.to_numpy(float),
            "property_names": np.array(list(self.properties.columns), dtype=str),
            "kl_descriptors": self.kl_descriptors, "kl_similarity": self.kl_similarity,
            "fragment_keys": np.array(list(self.fragments), dtype=str),
            "fragment_counts": np.array(list(self.fragments.values()), dtype=np.int64),
            "scaffold_keys": np.array(list(self.scaffolds), dtype=str),
            "scaffold_counts": np.array(list(self.scaffolds.values()), dtype=np.int64),
        }
        _save_npz(arrays, path)

    @classmethod
    def load(cls, path: Path) -> ReferenceStats:
        with np.load(path, allow_pickle=False) as data:
            n_molecules, n_valid = (int(v) for v in data["sizes"])
            return cls(
                n_molecules=n_molecules, n_valid=n_valid, fingerprints=data["fingerprints"],
                fragments=Counter(dict(zip(data["fragment_keys"].tolist(),
                                           data["fragment_counts"].tolist()))),
                scaffolds=Counter(dict(zip(data["scaffold_keys"].tolist(),
                                           data["scaffold_counts"].tolist()))),
                properties=pd.DataFrame(data["properties"],
                                        columns=data["property_names"].tolist()),
                counts=data["counts"], kl_descriptors=data["kl_descriptors"],
                kl_similarity=data["kl_similarity"])


def _save_npz(arrays: dict[str, np.ndarray], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def content_key(smiles: Sequence[Any], *settings: object) -> str:
    """A hash of a molecule list and the settings its statistics depend on (RDKit version
    included: canonical SMILES and descriptors change between releases)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((STATS_VERSION, version("rdkit"), settings)).encode())
    digest.update("\n".join(s if isinstance(s, str) else "" for s in smiles).encode())
    return digest.hexdigest()


def reference_stats(smiles: Sequence[Any], cache_dir: Path | None, kl_samples: int = 10000,
                    seed: int = 0, device: str = "auto", workers: int = 0,
                    chunk_size: int = 1000, label: str = "reference") -> ReferenceStats:
    """Statistics of a reference set, from the cache when it has them (``cache_dir`` None
    turns caching off)."""
    key = content_key(smiles, kl_samples, seed)
    path = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        log.info("%s statistics from cache %s", label, path)
        return ReferenceStats.load(path)
    parsed = parse_set(smiles, workers, chunk_size, desc=f"parse {label}", explain=False)
    stats = _compute_reference(parsed, kl_samples, seed, device, workers, chunk_size, label)
    if path is not None:
        stats.save(path)
    return stats


def reference_fcd(smiles: Sequence[Any], cache_dir: Path | None, device: str = "auto",
                  batch_size: int = 512, workers: int = 0, chunk_size: int = 1000,
                  label: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """ChemNet mean and covariance of a reference set (FCD), cached like its statistics."""
    path = cache_dir / f"{content_key(smiles, 'fcd')}-fcd.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return data["mu"], data["sigma"]
    unique, counts = parse_set(smiles, workers, chunk_size, desc=f"parse {label}",
                               explain=False).unique_counts()
    log.info("ChemNet activations of %d %s molecules (cached afterwards)", len(unique), label)
    mu, sigma = fcd.chemnet_statistics(unique, counts, device, batch_size)
    if path is not None:
        _save_npz({"mu": mu, "sigma": sigma}, path)
    return mu, sigma


def _compute_reference(parsed: ParsedSet, kl_samples: int, seed: int, device: str,
                       workers: int, chunk_size: int, label: str) -> ReferenceStats:
    rng = np.random.default_rng(seed)
    n = len(parsed.canonical)
    rows = np.sort(rng.choice(n, size=min(kl_samples, n), replace=False)) if n else []
    kl_molecules = parsed.kl_sample(rows, kl_samples)
    features = describe_set(parsed, kl_molecules, FeatureOptions(), workers, chunk_size,
                            desc=f"describe {label}")
    similarity = (metrics.nearest_similarity(features.kl_fingerprints, features.kl_fingerprints,
                                             device, exclude_self=True)
                  if len(features.kl_fingerprints) else np.zeros(0))
    return ReferenceStats(
        n_molecules=n, n_valid=int(features.counts.sum()),
        fingerprints=np.unique(features.fingerprints, axis=0),
        fragments=metrics.weighted_counter(features.fragments, features.counts),
        scaffolds=metrics.weighted_counter(features.scaffolds, features.counts),
        properties=features.properties, counts=features.counts,
        kl_descriptors=features.kl_descriptors, kl_similarity=similarity)


def training_set(smiles: Sequence[Any], canonical: bool, cache_dir: Path | None,
                 workers: int = 0, chunk_size: int = 1000) -> set[str]:
    """The canonical SMILES of a training set, for Novelty.

    ``canonical`` says the strings already are RDKit canonical (a prepared folder); otherwise
    they are canonicalized once and cached (the MOSES train set takes minutes).
    """
    if canonical:
        return {s for s in smiles if isinstance(s, str)}
    path = cache_dir / f"train-{content_key(smiles)}.parquet" if cache_dir else None
    if path is not None and path.is_file():
        return set(pd.read_parquet(path)["smiles"])
    canonical = map_chunks(canonical_chunk, smiles, workers, chunk_size, "parse train")
    unique = {s for s in canonical if s is not None}
    if path is not None:
        write_table(pd.DataFrame({"smiles": sorted(unique)}), path)
    return unique


def moses_filter_smarts() -> tuple[str, ...]:
    """MOSES's MCF and PAINS SMARTS (``mcf.csv``, ``wehi_pains.csv``) from the molsets wheel."""
    from molvae.data.sources import moses_wheel

    with zipfile.ZipFile(moses_wheel()) as wheel:
        mcf = pd.read_csv(io.BytesIO(wheel.read("moses/metrics/mcf.csv")))
        pains = pd.read_csv(io.BytesIO(wheel.read("moses/metrics/wehi_pains.csv")),
                            names=["smarts", "names"])
    return tuple(mcf["smarts"].tolist() + pains["smarts"].tolist())
