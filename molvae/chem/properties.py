"""Molecular properties: the standard panel (MW, logP, QED, SA, ...), penalized logP, and the
descriptors of GuacaMol's KL-divergence benchmark."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Lipinski, rdMolDescriptors
from rdkit.Contrib.SA_Score import sascorer

from molvae.chem.mol import to_mol

PROPERTY_NAMES = ("mw", "logp", "qed", "sa", "tpsa", "hbd", "hba", "rotatable_bonds", "rings",
                  "heavy_atoms", "plogp")


GUACAMOL_DESCRIPTORS = ("BertzCT", "MolLogP", "MolWt", "TPSA", "NumHAcceptors", "NumHDonors",
                        "NumRotatableBonds", "NumAliphaticRings", "NumAromaticRings")


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility, 1 (easy) to 10 (hard): RDKit Contrib's Ertl & Schuffenhauer."""
    return float(sascorer.calculateScore(mol))


def largest_ring_size(mol: Chem.Mol) -> int:
    """Size of the largest ring (0 when acyclic)."""
    rings = mol.GetRingInfo().AtomRings()
    return max((len(r) for r in rings), default=0)


def penalized_logp(mol: Chem.Mol, logp: float | None = None, sa: float | None = None) -> float:
    """logP - SA - max(largest ring - 6, 0): the unnormalized score of JT-VAE/GCPN/LIMO tables.

    ``logp`` and ``sa`` may be passed when already computed (the property panel does).
    """
    logp = Crippen.MolLogP(mol) if logp is None else logp
    sa = sa_score(mol) if sa is None else sa
    return float(logp - sa - max(largest_ring_size(mol) - 6, 0))


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
        "plogp": penalized_logp(mol, logp, sa),
    }


def smiles_properties(smiles: str | None) -> dict[str, float]:
    """Properties of a SMILES string; every value NaN when it does not parse."""
    mol = to_mol(smiles)
    if mol is None:
        return dict.fromkeys(PROPERTY_NAMES, math.nan)
    return properties(mol)


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
