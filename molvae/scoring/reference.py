"""Reference sets reduced to what the metrics need, cached on disk by content.

A reference set (the MOSES test set, a prepared split) becomes :class:`ReferenceStats`: plain
arrays cached as ``.npz`` under a hash of its molecules, so scoring many files against the
same reference describes it once. FCD statistics and the training set for Novelty are cached
the same way.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from molvae.chem import PROPERTY_NAMES
from molvae.io import atomic_path, write_table
from molvae.parallel import map_chunks
from molvae.scoring import fcd, metrics
from molvae.scoring.features import (
    FeatureOptions,
    ParsedSet,
    SetFeatures,
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
            np.savez(handle, allow_pickle=False, **arrays)


def content_key(smiles: Sequence[Any], *settings: object) -> str:
    """A hash of a molecule list and the settings its statistics depend on (RDKit version
    included: canonical SMILES and descriptors change between releases)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((STATS_VERSION, version("rdkit"), settings)).encode())
    digest.update("\n".join(s if isinstance(s, str) else "" for s in smiles).encode())
    return digest.hexdigest()


def reference_stats(smiles: Sequence[Any], cache_dir: Path | None, kl_samples: int = 10000,
                    seed: int = 0, device: str = "auto", workers: int = 0,
                    chunk_size: int = 1000, label: str = "reference",
                    moses_split: str | None = None) -> ReferenceStats:
    """Statistics of a reference set, from the cache when it has them (``cache_dir`` None
    turns caching off).

    ``moses_split`` says the molecules are that MOSES split: then MOSES's own statistics
    (shipped with the molsets wheel, what ``get_all_metrics`` uses) replace describing 176k
    molecules, and only GuacaMol's KL sample is described here.
    """
    key = content_key(smiles, kl_samples, seed, *([moses_split] if moses_split else []))
    path = cache_dir / f"{key}.npz" if cache_dir is not None else None
    if moses_split:
        _seed_moses_fcd(smiles, cache_dir, moses_split)
    if path is not None and path.is_file():
        log.info("%s statistics from cache %s", label, path)
        return ReferenceStats.load(path)
    if moses_split:
        stats = _shipped_reference(smiles, moses_split, cache_dir, kl_samples, seed, device,
                                   workers, chunk_size, label)
    else:
        parsed = parse_set(smiles, workers, chunk_size, desc=f"parse {label}", explain=False)
        stats = _compute_reference(parsed, kl_samples, seed, device, workers, chunk_size, label)
    if path is not None:
        stats.save(path)
    return stats


def reference_fcd(smiles: Sequence[Any], cache_dir: Path | None, device: str = "auto",
                  batch_size: int = 512, workers: int = 0, chunk_size: int = 1000,
                  label: str = "reference") -> tuple[np.ndarray, np.ndarray]:
    """ChemNet mean and covariance of a reference set (FCD), cached like its statistics."""
    path = _fcd_path(smiles, cache_dir)
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


def _fcd_path(smiles: Sequence[Any], cache_dir: Path | None) -> Path | None:
    return cache_dir / f"{content_key(smiles, 'fcd')}-fcd.npz" if cache_dir else None


def _kl_rows(n: int, kl_samples: int, seed: int) -> np.ndarray:
    """The rows GuacaMol's KL sample is drawn from (the same for computed and shipped)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(kl_samples, n), replace=False)) if n else np.zeros(
        0, dtype=np.int64)


def _kl_similarity(features: SetFeatures, device: str) -> np.ndarray:
    if not len(features.kl_fingerprints):
        return np.zeros(0)
    return metrics.nearest_similarity(features.kl_fingerprints, features.kl_fingerprints,
                                      device, exclude_self=True)


def _compute_reference(parsed: ParsedSet, kl_samples: int, seed: int, device: str,
                       workers: int, chunk_size: int, label: str) -> ReferenceStats:
    n = len(parsed.canonical)
    kl_molecules = parsed.kl_sample(_kl_rows(n, kl_samples, seed), kl_samples)
    features = describe_set(parsed, kl_molecules, FeatureOptions(), workers, chunk_size,
                            desc=f"describe {label}")
    return ReferenceStats(
        n_molecules=n, n_valid=int(features.counts.sum()),
        fingerprints=np.unique(features.fingerprints, axis=0),
        fragments=metrics.weighted_counter(features.fragments, features.counts),
        scaffolds=metrics.weighted_counter(features.scaffolds, features.counts),
        properties=features.properties, counts=features.counts,
        kl_descriptors=features.kl_descriptors, kl_similarity=_kl_similarity(features, device))


# MOSES's shipped statistics: molvae name -> key in MOSES's dict
SHIPPED_PROPERTIES = {"logp": "logP", "sa": "SA", "qed": "QED", "mw": "weight"}
SHIPPED_VERSION = 1


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays, dicts, lists, numbers, strings and Counters: the shipped
    statistics are a pickle, and a pickle can name any callable. Anything else is refused."""

    ALLOWED = frozenset({("numpy.core.multiarray", "_reconstruct"),
                         ("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"),
                         ("numpy", "dtype"), ("_codecs", "encode"),
                         ("collections", "Counter")})

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to unpickle {module}.{name}")
        return super().find_class(module, name)


def read_pickled_npy(handle: IO[bytes]) -> Any:
    """The object in a ``.npy`` holding one pickled object, through :class:`ArrayUnpickler`."""
    major, _ = np.lib.format.read_magic(handle)
    read_header = (np.lib.format.read_array_header_1_0 if major == 1
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(handle)
    if dtype != np.dtype(object) or shape != ():
        raise ValueError(f"expected one pickled object, found {dtype} {shape}")
    return ArrayUnpickler(handle, encoding="latin1").load().item()


def shipped_moses_stats(split: str, cache_dir: Path | None) -> dict[str, np.ndarray]:
    """MOSES's statistics of ``split`` as plain arrays: read once from the molsets wheel's
    ``{split}_stats.npz`` (safely) and kept as molvae's own npz (no pickle) afterwards."""
    from molvae.data.sources import moses_wheel

    path = cache_dir / f"moses-{split}-stats-v{SHIPPED_VERSION}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return dict(data)
    log.info("reading MOSES's %s statistics from the molsets wheel (once)", split)
    with zipfile.ZipFile(moses_wheel()) as wheel, \
            wheel.open(f"moses/dataset/data/{split}_stats.npz") as inner, \
            zipfile.ZipFile(inner) as npz, npz.open("stats.npy") as handle:
        raw = read_pickled_npy(handle)
    arrays = {"fingerprints": np.packbits(np.asarray(raw["SNN"]["fps"], dtype=bool), axis=1),
              "mu": np.asarray(raw["FCD"]["mu"]), "sigma": np.asarray(raw["FCD"]["sigma"])}
    for name in ("Frag", "Scaf"):
        counter = raw[name][name.lower()]
        arrays[f"{name}_keys"] = np.array(list(counter), dtype=str)
        arrays[f"{name}_counts"] = np.array(list(counter.values()), dtype=np.int64)
    for name in SHIPPED_PROPERTIES.values():
        arrays[name] = np.asarray(raw[name]["values"], dtype=float)
    if path is not None:
        _save_npz(arrays, path)
    return arrays


def _seed_moses_fcd(smiles: Sequence[Any], cache_dir: Path | None, split: str) -> None:
    """Put MOSES's ChemNet mean and covariance where :func:`reference_fcd` looks for them."""
    path = _fcd_path(smiles, cache_dir)
    if path is not None and not path.is_file():
        shipped = shipped_moses_stats(split, cache_dir)
        _save_npz({"mu": shipped["mu"], "sigma": shipped["sigma"]}, path)


def _shipped_reference(smiles: Sequence[Any], split: str, cache_dir: Path | None,
                       kl_samples: int, seed: int, device: str, workers: int,
                       chunk_size: int, label: str) -> ReferenceStats:
    """ReferenceStats from MOSES's statistics; only the KL sample is described here. Its
    other properties (TPSA, …) fill their rows for the plots; the rest stay NaN."""
    shipped = shipped_moses_stats(split, cache_dir)
    n = len(smiles)
    if len(shipped["logP"]) != n:
        raise ValueError(f"MOSES's {split} statistics cover {len(shipped['logP'])} molecules, "
                         f"the split has {n}")
    rows = _kl_rows(n, kl_samples, seed)
    parsed = parse_set([smiles[i] for i in rows], workers, chunk_size,
                       desc=f"parse {label} KL sample", explain=False)
    features = describe_set(parsed, parsed.kl_sample(range(len(rows)), kl_samples),
                            FeatureOptions(), workers, chunk_size, desc=f"describe {label}")
    properties = pd.DataFrame(np.nan, index=range(n), columns=list(PROPERTY_NAMES))
    described = features.properties.set_index(pd.Index(features.smiles))
    found = [(row, s) for row, s in zip(rows, parsed.canonical) if s in described.index]
    properties.loc[[r for r, _ in found]] = described.loc[[s for _, s in found]].to_numpy()
    for column, key in SHIPPED_PROPERTIES.items():
        properties[column] = shipped[key]
    counters = {name: Counter(dict(zip(shipped[f"{name}_keys"].tolist(),
                                       shipped[f"{name}_counts"].tolist())))
                for name in ("Frag", "Scaf")}
    return ReferenceStats(
        n_molecules=n, n_valid=n, fingerprints=np.unique(shipped["fingerprints"], axis=0),
        fragments=counters["Frag"], scaffolds=counters["Scaf"], properties=properties,
        counts=np.ones(n, dtype=np.int64), kl_descriptors=features.kl_descriptors,
        kl_similarity=_kl_similarity(features, device))


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
    parsed = map_chunks(canonical_chunk, smiles, workers, chunk_size, "parse train")
    unique = {s for s in parsed if s is not None}
    if path is not None:
        write_table(pd.DataFrame({"smiles": sorted(unique)}), path)
    return unique


MOSES_FILTERS = Path(__file__).with_name("data") / "moses_filters.csv"


def moses_filter_smarts() -> tuple[str, ...]:
    """MOSES's MCF and PAINS SMARTS, shipped with molvae (``data/moses_filters.csv``, copied
    unchanged from the molsets 0.3.1 wheel; MIT, see ``data/MOSES_LICENSE.txt``), so the
    Filters metric works offline."""
    return tuple(pd.read_csv(MOSES_FILTERS)["smarts"].tolist())
