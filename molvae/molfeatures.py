"""The chemistry behind the scores: each molecule parsed and described once, in parallel.

Scoring a set is two passes over processes: parse every distinct input string (validity, the
reason when invalid, canonical SMILES), then describe every distinct canonical molecule
(properties, Morgan fingerprint, BRICS fragments, scaffold, filters, GuacaMol descriptors).
A reference set is reduced to :class:`ReferenceStats`, cached on disk under a hash of its
content, so scoring many files against the same reference (e.g. MOSES) describes it once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae import chem, metrics
from molvae.io import atomic_path, write_table

log = logging.getLogger(__name__)

STATS_VERSION = 1
FINGERPRINT_BITS = 1024  # MOSES: Morgan radius 2, 1024 bits
KL_FINGERPRINT_BITS = 4096  # GuacaMol's ECFP4 for internal similarity
N_CONTINUOUS_KL = 4  # GuacaMol: the first four descriptors are continuous


def parallel_chunks(function: Callable[[list], list], items: Sequence, workers: int = 0,
                    chunk_size: int = 1000, desc: str = "") -> list:
    """``function`` over ``items`` in chunks, in worker processes, with a progress bar.

    ``function`` maps a list to a list of the same length; results keep the input order.
    ``workers`` 0 means all cores; one chunk or one worker runs in this process.
    """
    chunks = [list(items[i:i + chunk_size]) for i in range(0, len(items), chunk_size)]
    workers = workers or os.cpu_count() or 1
    results: list = []
    with tqdm(total=len(items), desc=desc, unit="mol") as bar:
        if workers == 1 or len(chunks) <= 1:
            outputs: Iterable[list] = map(function, chunks)
            for out in outputs:
                results.extend(out)
                bar.update(len(out))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                for out in pool.map(function, chunks):
                    results.extend(out)
                    bar.update(len(out))
    return results


NON_ASCII = "not a valid SMILES string (non-ASCII characters)"
INVALID = "not a valid SMILES string"


def _parse_chunk(raws: list, explain: bool = True
                 ) -> list[tuple[str | None, str | None, str | None]]:
    """(canonical, non-stereo, reason) per string; ``explain`` False skips the diagnosis
    (half the work; reference sets only need to know which molecules are valid)."""
    out = []
    for raw in raws:
        text = raw if isinstance(raw, str) else None
        if text is not None and not text.isascii():
            # SMILES is ASCII; RDKit silently drops some non-ASCII characters ('☃C' -> C)
            out.append((None, None, NON_ASCII))
            continue
        if explain:
            mol, reason = chem.parse_with_reason(text)
        else:
            mol = chem.to_mol(text)
            reason = None if mol is not None else INVALID
        if mol is None:
            out.append((None, None, reason))
        else:
            out.append((chem.canonical_smiles(mol), chem.nonstereo_smiles(mol), None))
    return out


def _canonical_chunk(raws: list) -> list[str | None]:
    return [chem.canonical_smiles(r) if isinstance(r, str) and r.isascii() else None
            for r in raws]


@dataclass
class ParsedSet:
    """Per input row: canonical SMILES, non-stereo SMILES and reason (None when valid)."""

    canonical: list[str | None]
    nonstereo: list[str | None]
    reasons: list[str | None]

    def valid_rows(self) -> list[int]:
        return [i for i, smiles in enumerate(self.canonical) if smiles is not None]

    def unique_counts(self) -> tuple[list[str], np.ndarray]:
        """Distinct canonical SMILES in first-seen order and how often each occurs."""
        counts = Counter(s for s in self.canonical if s is not None)
        return list(counts), np.fromiter(counts.values(), dtype=np.int64, count=len(counts))

    def kl_sample(self, rows: Iterable[int], limit: int) -> set[str]:
        """Canonical representatives of the first ``limit`` distinct non-stereo molecules in
        ``rows`` (GuacaMol compares unique molecules without stereochemistry)."""
        seen: dict[str, str] = {}
        for i in rows:
            key = self.nonstereo[i]
            if key is not None and key not in seen:
                seen[key] = self.canonical[i]
                if len(seen) >= limit:
                    break
        return set(seen.values())


def parse_set(raw: Sequence[Any], workers: int = 0, chunk_size: int = 1000,
              desc: str = "parse", explain: bool = True) -> ParsedSet:
    """Parse every row (identical strings once); ``explain`` says why a row is invalid."""
    keys = [r if isinstance(r, str) else None for r in raw]
    distinct = list(dict.fromkeys(keys))
    worker = partial(_parse_chunk, explain=explain)
    parsed = dict(zip(distinct, parallel_chunks(worker, distinct, workers, chunk_size, desc)))
    rows = [parsed[k] for k in keys]
    return ParsedSet([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


@dataclass(frozen=True)
class FeatureOptions:
    """Which optional descriptions to compute (filters only matter for generated sets)."""

    filter_smarts: tuple[str, ...] | None = None  # MOSES MCF + PAINS SMARTS
    catalogs: tuple[str, ...] = ()  # RDKit FilterCatalog names


class MoleculeFeatures(NamedTuple):
    """Everything the metrics need of one molecule (a worker process computes it)."""

    properties: tuple[float, ...]
    fingerprint: np.ndarray
    fragments: Counter
    scaffold: str | None
    passes_filters: bool | None
    catalog_passes: tuple[bool, ...]
    kl_descriptors: list[float] | None
    kl_fingerprint: np.ndarray | None


def _describe(smiles: str, want_kl: bool, options: FeatureOptions,
              moses_catalog: Any) -> MoleculeFeatures | str:
    mol = chem.to_mol(smiles)
    if mol is None:
        return "canonical SMILES does not parse back (RDKit round trip)"
    try:
        props = chem.properties(mol)
        return MoleculeFeatures(
            properties=tuple(props[p] for p in chem.PROPERTY_NAMES),
            fingerprint=chem.packed_fingerprint(mol, 2, FINGERPRINT_BITS),
            fragments=Counter(chem.brics_fragments(mol)),
            scaffold=chem.ring_scaffold(mol),
            passes_filters=None if moses_catalog is None
            else chem.passes_moses_filters(mol, moses_catalog),
            catalog_passes=tuple(not chem.matches_catalog(mol, n) for n in options.catalogs),
            kl_descriptors=chem.guacamol_descriptors(mol) if want_kl else None,
            kl_fingerprint=chem.packed_fingerprint(mol, 2, KL_FINGERPRINT_BITS) if want_kl
            else None)
    except (ValueError, RuntimeError, ArithmeticError) as err:
        return f"RDKit could not describe the molecule: {err}"


def _describe_chunk(items: list[tuple[str, bool]], options: FeatureOptions) -> list:
    catalog = chem.smarts_catalog(options.filter_smarts) if options.filter_smarts else None
    return [_describe(smiles, want_kl, options, catalog) for smiles, want_kl in items]


@dataclass
class SetFeatures:
    """Descriptions of the distinct valid molecules of a set (row i = ``smiles[i]``)."""

    smiles: list[str]
    counts: np.ndarray
    properties: pd.DataFrame
    fingerprints: np.ndarray
    fragments: list[Counter]
    scaffolds: list[str | None]
    passes_filters: np.ndarray | None
    catalog_passes: dict[str, np.ndarray]
    kl_descriptors: np.ndarray
    kl_fingerprints: np.ndarray
    failures: dict[str, str] = field(default_factory=dict)


def describe_set(parsed: ParsedSet, kl_molecules: set[str], options: FeatureOptions,
                 workers: int = 0, chunk_size: int = 1000, desc: str = "describe") -> SetFeatures:
    """Describe each distinct valid molecule of ``parsed`` once.

    Molecules RDKit parses but cannot describe are left out and listed in ``failures``.
    """
    smiles, counts = parsed.unique_counts()
    worker = partial(_describe_chunk, options=options)
    described = parallel_chunks(worker, [(s, s in kl_molecules) for s in smiles], workers,
                                chunk_size, desc)
    failures = {s: d for s, d in zip(smiles, described) if isinstance(d, str)}
    keep = [i for i, d in enumerate(described) if not isinstance(d, str)]
    rows: list[MoleculeFeatures] = [described[i] for i in keep]
    kl_rows = [r for r in rows if r.kl_descriptors is not None]
    return SetFeatures(
        smiles=[smiles[i] for i in keep],
        counts=counts[keep],
        properties=pd.DataFrame([r.properties for r in rows], columns=list(chem.PROPERTY_NAMES)),
        fingerprints=np.array([r.fingerprint for r in rows], dtype=np.uint8).reshape(
            -1, FINGERPRINT_BITS // 8),
        fragments=[r.fragments for r in rows],
        scaffolds=[r.scaffold for r in rows],
        passes_filters=None if options.filter_smarts is None
        else np.array([bool(r.passes_filters) for r in rows], dtype=bool),
        catalog_passes={name: np.array([r.catalog_passes[j] for r in rows], dtype=bool)
                        for j, name in enumerate(options.catalogs)},
        kl_descriptors=np.array([r.kl_descriptors for r in kl_rows], dtype=float).reshape(
            -1, len(chem.GUACAMOL_DESCRIPTORS)),
        kl_fingerprints=np.array([r.kl_fingerprint for r in kl_rows], dtype=np.uint8).reshape(
            -1, KL_FINGERPRINT_BITS // 8),
        failures=failures)


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
    mu, sigma = metrics.chemnet_statistics(unique, counts, device, batch_size)
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
    canonical = parallel_chunks(_canonical_chunk, smiles, workers, chunk_size, "parse train")
    unique = {s for s in canonical if s is not None}
    if path is not None:
        write_table(pd.DataFrame({"smiles": sorted(unique)}), path)
    return unique


def moses_filter_smarts() -> tuple[str, ...]:
    """MOSES's MCF and PAINS SMARTS (``mcf.csv``, ``wehi_pains.csv``) from the molsets wheel."""
    from molvae.sources import moses_wheel

    with zipfile.ZipFile(moses_wheel()) as wheel:
        mcf = pd.read_csv(io.BytesIO(wheel.read("moses/metrics/mcf.csv")))
        pains = pd.read_csv(io.BytesIO(wheel.read("moses/metrics/wehi_pains.csv")),
                            names=["smarts", "names"])
    return tuple(mcf["smarts"].tolist() + pains["smarts"].tolist())
