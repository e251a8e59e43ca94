"""Structural alerts and filters: PAINS, RDKit's alert catalogs, MOSES's MCF + PAINS filters,
and the guards latent optimization checks next to its objective."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rdkit import Chem

from molvae.chem.mol import to_mol
from molvae.chem.properties import largest_ring_size

if TYPE_CHECKING:
    from rdkit.Chem.FilterCatalog import FilterCatalog

MOSES_FILTER_ELEMENTS = ("C", "N", "S", "O", "F", "Cl", "Br", "H")


def pains_alerts(mol: Chem.Mol) -> list[str]:
    """Names of the PAINS alerts (Baell & Holloway 2010, RDKit FilterCatalog) ``mol`` matches."""
    return [entry.GetDescription() for entry in _rdkit_catalog("PAINS").GetMatches(mol)]


def structure_alerts(smiles: str | None) -> dict[str, float]:
    """Structure guards of latent optimization: ``largest_ring`` size, ``pains`` alert count
    and ``radicals`` (unpaired electrons).

    Optimizers exploit what plain properties miss (macrocycles, assay-interference motifs, and
    the radicals SELFIES decoding can write, e.g. ``[NH]``), so these are checked next to the
    objective. Every value is NaN when the SMILES does not parse.
    """
    mol = to_mol(smiles)
    if mol is None:
        return {"largest_ring": math.nan, "pains": math.nan, "radicals": math.nan}
    return {"largest_ring": float(largest_ring_size(mol)),
            "pains": float(_pains_patterns().count_matches(mol)),
            "radicals": float(sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()))}


class ScreenedPatterns:
    """SMARTS patterns matched behind a pattern-fingerprint screen.

    A molecule can only contain a pattern whose pattern-fingerprint bits it has too, so each
    molecule is fingerprinted once and only the patterns that pass that bit test are tried
    (about 20 of MOSES's 502 filter patterns per molecule): the same answers as trying every
    pattern (checked on 8,000 molecules, 2,029 of them matching), 3x faster.
    """

    BITS = 2048

    def __init__(self, patterns: Sequence[str], merge_hs: bool = False) -> None:
        self.queries = [Chem.MolFromSmarts(p) for p in patterns]
        bad = [p for p, q in zip(patterns, self.queries) if q is None]
        if bad:
            raise ValueError(f"not SMARTS: {', '.join(bad[:3])}")
        if merge_hs:  # explicit [#1] atoms become H-count queries, for molecules without Hs
            self.queries = [Chem.MergeQueryHs(q) for q in self.queries]
        self.screen = np.array([self._bits(q) for q in self.queries],
                               dtype=np.uint8).reshape(len(self.queries), -1).view(np.uint64)

    def _bits(self, mol: Chem.Mol) -> np.ndarray:
        text = Chem.PatternFingerprint(mol, fpSize=self.BITS).ToBitString().encode()
        return np.packbits(np.frombuffer(text, dtype=np.uint8) == ord("1"))

    def _candidates(self, mol: Chem.Mol) -> np.ndarray:
        """Indices of the patterns whose screen bits ``mol`` has."""
        have = self._bits(mol).view(np.uint64)
        return np.flatnonzero(~((self.screen & ~have) != 0).any(axis=1))

    def has_match(self, mol: Chem.Mol) -> bool:
        """Whether any pattern matches ``mol``."""
        return any(mol.HasSubstructMatch(self.queries[i]) for i in self._candidates(mol))

    def count_matches(self, mol: Chem.Mol) -> int:
        """How many patterns match ``mol``."""
        return sum(mol.HasSubstructMatch(self.queries[i]) for i in self._candidates(mol))


@lru_cache(maxsize=4)
def smarts_catalog(patterns: tuple[str, ...]) -> ScreenedPatterns:
    """The patterns ready to match (built once per process)."""
    return ScreenedPatterns(patterns)


def passes_moses_filters(mol: Chem.Mol, catalog: ScreenedPatterns,
                         allowed: Iterable[str] = MOSES_FILTER_ELEMENTS) -> bool:
    """MOSES's ``mol_passes_filters``: no ring of 8+ atoms, no charged atom, only ``allowed``
    elements, no match of ``catalog`` (MOSES's MCF + PAINS SMARTS, matched with explicit
    hydrogens), and a non-stereo SMILES that parses back."""
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    allowed = set(allowed)
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in allowed for a in mol.GetAtoms()):
        return False
    if catalog.has_match(Chem.AddHs(mol)):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


def filter_catalog_names() -> tuple[str, ...]:
    """Names of RDKit's structural-alert catalogs (PAINS, BRENK, NIH, ZINC, CHEMBL_*, ...)."""
    from rdkit.Chem.FilterCatalog import FilterCatalogParams

    return tuple(n for n in FilterCatalogParams.FilterCatalogs.names if n != "ALL")


@lru_cache(maxsize=16)
def _rdkit_catalog(name: str) -> FilterCatalog:
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.names[name])
    return FilterCatalog(params)


def matches_catalog(mol: Chem.Mol, name: str) -> bool:
    """Whether ``mol`` hits any alert of RDKit's FilterCatalog ``name`` (e.g. 'PAINS').

    PAINS, the slowest (480 alerts, 2 ms a molecule), is matched from the SMARTS file RDKit
    ships (``Data/Pains/wehi_pains.csv``, hydrogens merged into the queries as the catalog
    does) behind the pattern screen: the same answers as the FilterCatalog on 10,000
    molecules (208 hits), 4x faster.
    """
    if name == "PAINS":
        return _pains_patterns().has_match(mol)
    return bool(_rdkit_catalog(name).HasMatch(mol))


@lru_cache(maxsize=1)
def _pains_patterns() -> ScreenedPatterns:
    import csv

    from rdkit import RDConfig

    with open(Path(RDConfig.RDDataDir) / "Pains" / "wehi_pains.csv") as handle:
        return ScreenedPatterns([row[0] for row in csv.reader(handle)], merge_hs=True)
