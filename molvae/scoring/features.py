"""The chemistry behind the scores: each molecule parsed and described once, in parallel.

Scoring a set is two passes over processes: parse every distinct input string (validity, the
reason when invalid, canonical SMILES), then describe every distinct canonical molecule
(properties, Morgan fingerprint, BRICS fragments, scaffold, filters, GuacaMol descriptors).
Reference sets are reduced to statistics in :mod:`molvae.scoring.reference`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from molvae import chem
from molvae.parallel import map_chunks

log = logging.getLogger(__name__)

FINGERPRINT_BITS = 1024  # MOSES: Morgan radius 2, 1024 bits
KL_FINGERPRINT_BITS = 4096  # GuacaMol's ECFP4 for internal similarity
N_CONTINUOUS_KL = 4  # GuacaMol: the first four descriptors are continuous


NON_ASCII = chem.RejectReason.NON_ASCII  # the name scoring's callers know it by
INVALID = "not a valid SMILES string"


def _parse_chunk(raws: list, explain: bool = True
                 ) -> list[tuple[str | None, str | None, str | None]]:
    """(canonical, non-stereo, reason) per string; ``explain`` False skips the diagnosis
    (half the work; reference sets only need to know which molecules are valid). Non-ASCII,
    whitespace, overlong and overlarge inputs are turned away by :func:`chem.screen_smiles`
    inside both parsers before RDKit does any real work on them."""
    out: list[tuple[str | None, str | None, str | None]] = []
    for raw in raws:
        text = raw if isinstance(raw, str) else None
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


def canonical_chunk(raws: list) -> list[str | None]:
    """Canonical SMILES per string (None when not a SMILES of a molecule)."""
    return [chem.canonical_smiles(r) if isinstance(r, str) else None for r in raws]


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
            key, canonical = self.nonstereo[i], self.canonical[i]
            if key is not None and canonical is not None and key not in seen:
                seen[key] = canonical
                if len(seen) >= limit:
                    break
        return set(seen.values())


def parse_set(raw: Sequence[Any], workers: int = 0, chunk_size: int = 1000,
              desc: str = "parse", explain: bool = True) -> ParsedSet:
    """Parse every row (identical strings once); ``explain`` says why a row is invalid."""
    keys = [r if isinstance(r, str) else None for r in raw]
    distinct = list(dict.fromkeys(keys))
    worker = partial(_parse_chunk, explain=explain)
    parsed = dict(zip(distinct, map_chunks(worker, distinct, workers, chunk_size, desc)))
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
            kl_descriptors=chem.guacamol_descriptors(mol, props["logp"]) if want_kl else None,
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
    described = map_chunks(worker, [(s, s in kl_molecules) for s in smiles], workers,
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
