"""Structural alerts and filters: PAINS, RDKit's alert catalogs, MOSES's MCF + PAINS filters,
and the guards latent optimization checks next to its objective."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

from rdkit import Chem

from molvae.chem.mol import to_mol
from molvae.chem.properties import largest_ring_size

MOSES_FILTER_ELEMENTS = ("C", "N", "S", "O", "F", "Cl", "Br", "H")


@lru_cache(maxsize=1)
def _pains_catalog():  # noqa: ANN202 (RDKit FilterCatalog type)
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.PAINS)
    return FilterCatalog(params)


def pains_alerts(mol: Chem.Mol) -> list[str]:
    """Names of the PAINS alerts (Baell & Holloway 2010, RDKit FilterCatalog) ``mol`` matches."""
    return [entry.GetDescription() for entry in _pains_catalog().GetMatches(mol)]


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
    return {"largest_ring": float(largest_ring_size(mol)), "pains": float(len(pains_alerts(mol))),
            "radicals": float(sum(a.GetNumRadicalElectrons() for a in mol.GetAtoms()))}


@lru_cache(maxsize=4)
def smarts_catalog(patterns: tuple[str, ...]):  # noqa: ANN201 (RDKit FilterCatalog type)
    """A FilterCatalog of SMARTS patterns, matched in C++ (much faster than a Python loop)."""
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogEntry, SmartsMatcher

    catalog = FilterCatalog()
    for i, smarts in enumerate(patterns):
        catalog.AddEntry(FilterCatalogEntry(str(i), SmartsMatcher(str(i), smarts, 1)))
    return catalog


def passes_moses_filters(mol: Chem.Mol, catalog,  # noqa: ANN001 (RDKit FilterCatalog)
                         allowed: Iterable[str] = MOSES_FILTER_ELEMENTS) -> bool:
    """MOSES's ``mol_passes_filters``: no ring of 8+ atoms, no charged atom, only ``allowed``
    elements, no match of ``catalog`` (MOSES's MCF + PAINS SMARTS, matched with explicit
    hydrogens), and a non-stereo SMILES that parses back."""
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    allowed = set(allowed)
    if any(a.GetFormalCharge() != 0 or a.GetSymbol() not in allowed for a in mol.GetAtoms()):
        return False
    if catalog.HasMatch(Chem.AddHs(mol)):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


def filter_catalog_names() -> tuple[str, ...]:
    """Names of RDKit's structural-alert catalogs (PAINS, BRENK, NIH, ZINC, CHEMBL_*, ...)."""
    from rdkit.Chem.FilterCatalog import FilterCatalogParams

    return tuple(n for n in FilterCatalogParams.FilterCatalogs.names if n != "ALL")


@lru_cache(maxsize=16)
def _rdkit_catalog(name: str):  # noqa: ANN202 (RDKit FilterCatalog type)
    from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

    params = FilterCatalogParams()
    params.AddCatalog(FilterCatalogParams.FilterCatalogs.names[name])
    return FilterCatalog(params)


def matches_catalog(mol: Chem.Mol, name: str) -> bool:
    """Whether ``mol`` hits any alert of RDKit's FilterCatalog ``name`` (e.g. 'PAINS')."""
    return bool(_rdkit_catalog(name).HasMatch(mol))
