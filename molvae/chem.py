"""All RDKit chemistry lives here: parsing, standardization, properties, fingerprints.

Functions that take SMILES return ``None`` (or NaN for numbers) on failure instead of raising,
so callers can count failures rather than crash on them (datamol's ``to_mol`` convention).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs, RDLogger
from rdkit.Chem import QED, Crippen, Lipinski, rdMolDescriptors
from rdkit.Chem.MolStandardize import rdMolStandardize
from rdkit.Chem.Scaffolds import MurckoScaffold
from rdkit.Contrib.SA_Score import sascorer

RDLogger.DisableLog("rdApp.*")

ORGANIC_ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "I", "P", "B", "Si", "Se", "H")
PROPERTY_NAMES = ("mw", "logp", "qed", "sa", "tpsa", "hbd", "hba", "rotatable_bonds", "rings",
                  "heavy_atoms", "plogp")


class RejectReason:
    """Human-readable reasons a molecule is turned away (they end up in rejects.csv)."""

    EMPTY = "empty SMILES"
    UNPARSABLE = "not a valid SMILES string (syntax error)"
    VALENCE = "valence error (an atom has too many bonds)"
    KEKULIZE = "aromatic system cannot be kekulized"
    SANITIZE = "RDKit sanitization failed"
    NO_ATOMS = "no atoms left after removing salts/solvents"
    ELEMENT = "disallowed element"
    TOO_SMALL = "too few heavy atoms"
    TOO_LARGE = "too many heavy atoms"


def read_sdf(path: str | Path) -> pd.DataFrame:
    """An SDF file (``.gz`` too) as a table: ``smiles`` (None for unreadable records) + SD tags."""
    opener = gzip.open if str(path).endswith(".gz") else open
    rows = []
    with opener(path, "rb") as handle:
        for mol in Chem.ForwardSDMolSupplier(handle, sanitize=False, removeHs=False):
            if mol is None:
                rows.append({"smiles": None})
                continue
            row = {"smiles": Chem.MolToSmiles(mol)}
            row.update(mol.GetPropsAsDict(includePrivate=False, includeComputed=False))
            if mol.HasProp("_Name") and mol.GetProp("_Name"):
                row.setdefault("name", mol.GetProp("_Name"))
            rows.append(row)
    table = pd.DataFrame(rows)
    return table[["smiles", *[c for c in table.columns if c != "smiles"]]] if rows else \
        pd.DataFrame(columns=["smiles"])


def to_mol(smiles: str | None) -> Chem.Mol | None:
    """Parse SMILES into a sanitized RDKit molecule, or None when it is not a molecule."""
    if not smiles or not isinstance(smiles, str):
        return None
    return Chem.MolFromSmiles(smiles.strip())


def parse_with_reason(smiles: str | None) -> tuple[Chem.Mol | None, str | None]:
    """Parse SMILES; on failure also say why (syntax, valence, kekulization) for a person."""
    if smiles is None or not isinstance(smiles, str) or not smiles.strip():
        return None, RejectReason.EMPTY
    text = smiles.strip().split()[0]
    raw = Chem.MolFromSmiles(text, sanitize=False)
    if raw is None:
        return None, RejectReason.UNPARSABLE
    problems = Chem.DetectChemistryProblems(raw)
    if problems:
        kind = problems[0].GetType()
        detail = problems[0].Message()
        if kind == "AtomValenceException":
            return None, f"{RejectReason.VALENCE}: {detail}"
        if kind in ("AtomKekulizeException", "KekulizeException"):
            return None, f"{RejectReason.KEKULIZE}: {detail}"
        return None, f"{RejectReason.SANITIZE}: {detail}"
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        return None, RejectReason.SANITIZE
    return mol, None


@lru_cache(maxsize=1)
def _standardizers() -> tuple[rdMolStandardize.LargestFragmentChooser, rdMolStandardize.Uncharger]:
    return (rdMolStandardize.LargestFragmentChooser(preferOrganic=True),
            rdMolStandardize.Uncharger())


def standardize_mol(mol: Chem.Mol, keep_stereo: bool = True) -> Chem.Mol | None:
    """Keep the largest organic fragment (drops salts, solvents), neutralize, optionally flatten.

    Returns None if nothing is left or RDKit cannot sanitize the result.
    """
    chooser, uncharger = _standardizers()
    needs_cleaning = len(Chem.GetMolFrags(mol)) > 1 or any(
        a.GetFormalCharge() for a in mol.GetAtoms())
    try:
        if needs_cleaning:  # most molecules are one neutral fragment: skip the costly part
            mol = chooser.choose(mol)
            mol = uncharger.uncharge(mol)
        if not keep_stereo:
            mol = Chem.Mol(mol)
            Chem.RemoveStereochemistry(mol)
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):
        return None
    if mol is None or mol.GetNumHeavyAtoms() == 0:
        return None
    return mol


def canonical_smiles(mol_or_smiles: Chem.Mol | str | None) -> str | None:
    """RDKit canonical SMILES (isomeric), or None when the input is not a molecule."""
    mol = to_mol(mol_or_smiles) if isinstance(mol_or_smiles, str) or mol_or_smiles is None \
        else mol_or_smiles
    if mol is None:
        return None
    return Chem.MolToSmiles(mol)


def filter_reason(mol: Chem.Mol, allowed_elements: Iterable[str] | None = ORGANIC_ELEMENTS,
                  min_heavy_atoms: int = 1, max_heavy_atoms: int | None = None) -> str | None:
    """Why a molecule fails the element/size filters, or None when it passes."""
    if allowed_elements is not None:
        allowed = set(allowed_elements)
        bad = sorted({a.GetSymbol() for a in mol.GetAtoms()} - allowed)
        if bad:
            return f"{RejectReason.ELEMENT}: {', '.join(bad)}"
    heavy = mol.GetNumHeavyAtoms()
    if heavy < min_heavy_atoms:
        return f"{RejectReason.TOO_SMALL}: {heavy} < {min_heavy_atoms}"
    if max_heavy_atoms is not None and heavy > max_heavy_atoms:
        return f"{RejectReason.TOO_LARGE}: {heavy} > {max_heavy_atoms}"
    return None


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility, 1 (easy) to 10 (hard): RDKit Contrib's Ertl & Schuffenhauer."""
    return float(sascorer.calculateScore(mol))


def largest_ring_size(mol: Chem.Mol) -> int:
    """Size of the largest ring (0 when acyclic)."""
    rings = mol.GetRingInfo().AtomRings()
    return max((len(r) for r in rings), default=0)


def penalized_logp(mol: Chem.Mol) -> float:
    """logP - SA - max(largest ring - 6, 0): the unnormalized score of JT-VAE/GCPN/LIMO tables."""
    return float(Crippen.MolLogP(mol) - sa_score(mol) - max(largest_ring_size(mol) - 6, 0))


def properties(mol: Chem.Mol) -> dict[str, float]:
    """The standard property panel, keyed by :data:`PROPERTY_NAMES`.

    QED's own descriptor pass (MW, logP, TPSA, rotatable bonds, H-bond donors) is reused for
    those properties, so the costly parts are computed once per molecule.
    """
    qed_inputs = QED.properties(mol)
    logp = qed_inputs.ALOGP
    sa = sa_score(mol)
    return {
        "mw": float(qed_inputs.MW),
        "logp": float(logp),
        "qed": float(QED.qed(mol, qedProperties=qed_inputs)),
        "sa": sa,
        "tpsa": float(qed_inputs.PSA),
        "hbd": float(qed_inputs.HBD),
        "hba": float(Lipinski.NumHAcceptors(mol)),
        "rotatable_bonds": float(qed_inputs.ROTB),
        "rings": float(rdMolDescriptors.CalcNumRings(mol)),
        "heavy_atoms": float(mol.GetNumHeavyAtoms()),
        "plogp": float(logp - sa - max(largest_ring_size(mol) - 6, 0)),
    }


def smiles_properties(smiles: str | None) -> dict[str, float]:
    """Properties of a SMILES string; every value NaN when it does not parse."""
    mol = to_mol(smiles)
    if mol is None:
        return dict.fromkeys(PROPERTY_NAMES, math.nan)
    return properties(mol)


def scaffold(mol_or_smiles: Chem.Mol | str | None) -> str | None:
    """Bemis–Murcko scaffold SMILES ('' for acyclic molecules), None when not a molecule."""
    mol = to_mol(mol_or_smiles) if isinstance(mol_or_smiles, str) or mol_or_smiles is None \
        else mol_or_smiles
    if mol is None:
        return None
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol)


@lru_cache(maxsize=4)
def _morgan_generator(radius: int, n_bits: int):  # noqa: ANN202 (RDKit generator type)
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def morgan_fingerprint(mol: Chem.Mol, radius: int = 2, n_bits: int = 1024):  # noqa: ANN201
    """Morgan (ECFP4 by default) bit vector, the fingerprint MOSES metrics use."""
    return _morgan_generator(radius, n_bits).GetFingerprint(mol)


def fingerprint_array(mols: Sequence[Chem.Mol], radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """Morgan fingerprints as a dense uint8 matrix (rows = molecules)."""
    gen = _morgan_generator(radius, n_bits)
    out = np.zeros((len(mols), n_bits), dtype=np.uint8)
    for i, mol in enumerate(mols):
        out[i] = gen.GetFingerprintAsNumPy(mol)
    return out


def tanimoto(query: Chem.Mol, others: Sequence[Chem.Mol]) -> np.ndarray:
    """Tanimoto similarity of one molecule to each of ``others`` (Morgan r=2, 1024 bits)."""
    fp = morgan_fingerprint(query)
    return np.asarray(DataStructs.BulkTanimotoSimilarity(fp, [morgan_fingerprint(m)
                                                               for m in others]))


def similarity(smiles_a: str, smiles_b: str) -> float:
    """Tanimoto similarity of two SMILES; NaN if either is not a molecule."""
    a, b = to_mol(smiles_a), to_mol(smiles_b)
    if a is None or b is None:
        return math.nan
    return float(DataStructs.TanimotoSimilarity(morgan_fingerprint(a), morgan_fingerprint(b)))


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
    """Structure guards of latent optimization: ``largest_ring`` size and ``pains`` alert count.

    Optimizers exploit what plain properties miss (macrocycles, assay-interference motifs), so
    these are checked next to the objective. Every value is NaN when the SMILES does not parse.
    """
    mol = to_mol(smiles)
    if mol is None:
        return {"largest_ring": math.nan, "pains": math.nan}
    return {"largest_ring": float(largest_ring_size(mol)), "pains": float(len(pains_alerts(mol)))}


GUACAMOL_DESCRIPTORS = ("BertzCT", "MolLogP", "MolWt", "TPSA", "NumHAcceptors", "NumHDonors",
                        "NumRotatableBonds", "NumAliphaticRings", "NumAromaticRings")
MOSES_FILTER_ELEMENTS = ("C", "N", "S", "O", "F", "Cl", "Br", "H")


def packed_fingerprint(mol: Chem.Mol, radius: int = 2, n_bits: int = 1024) -> np.ndarray:
    """Morgan bits packed eight to a byte (``np.packbits``): small to cache and to send between
    processes; ``np.unpackbits`` gives back the 0/1 vector of :func:`fingerprint_array`."""
    return np.packbits(_morgan_generator(radius, n_bits).GetFingerprintAsNumPy(mol))


def brics_fragments(mol: Chem.Mol) -> list[str]:
    """SMILES of the pieces left after cutting every BRICS bond (the units of MOSES's Frag)."""
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def ring_scaffold(mol: Chem.Mol, min_rings: int = 2) -> str | None:
    """Bemis–Murcko scaffold SMILES when it has at least ``min_rings`` rings, else None.

    This is MOSES's Scaf unit: scaffolds with fewer than two rings are not counted.
    """
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    if not smiles or core.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


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


@lru_cache(maxsize=1)
def _guacamol_calculator():  # noqa: ANN202 (RDKit descriptor calculator)
    from rdkit.ML.Descriptors import MoleculeDescriptors

    return MoleculeDescriptors.MolecularDescriptorCalculator(list(GUACAMOL_DESCRIPTORS))


def guacamol_descriptors(mol: Chem.Mol) -> list[float]:
    """The descriptors of GuacaMol's KL-divergence benchmark, in :data:`GUACAMOL_DESCRIPTORS`
    order; a non-finite value becomes 0 as GuacaMol does."""
    values = np.asarray(_guacamol_calculator().CalcDescriptors(mol), dtype=float)
    values[~np.isfinite(values)] = 0.0
    return values.tolist()


def nonstereo_smiles(mol: Chem.Mol) -> str:
    """Canonical SMILES without stereochemistry (GuacaMol compares molecules this way)."""
    return Chem.MolToSmiles(mol, isomericSmiles=False)


def draw_grid(smiles: Sequence[str], legends: Sequence[str] | None = None, per_row: int = 6,
              size: tuple[int, int] = (250, 250)) -> bytes:
    """A PNG image (bytes) of molecules drawn on a grid; unparsable SMILES are left out."""
    from rdkit.Chem import Draw

    legends = list(legends) if legends is not None else [""] * len(smiles)
    pairs = [(mol, legend) for mol, legend in zip(map(to_mol, smiles), legends)
             if mol is not None]
    options = Draw.MolDrawOptions()
    options.drawMolsSameScale = False  # one huge molecule must not shrink all the others
    return Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=per_row, subImgSize=size,
                                legends=[lg for _, lg in pairs], returnPNG=True,
                                drawOptions=options)
