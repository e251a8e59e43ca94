"""Molecular properties: the standard panel (MW, logP, QED, SA, ...), penalized logP, and the
descriptors of GuacaMol's KL-divergence benchmark."""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from rdkit import Chem
from rdkit.Chem import QED, Crippen, FilterCatalog, Lipinski, MolSurf, rdMolDescriptors
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


def properties(mol: Chem.Mol, names: Iterable[str] = PROPERTY_NAMES) -> dict[str, float]:
    """The property panel (or the ``names`` asked for), in the order asked for.

    Only what is asked for is computed: QED (half the cost of the whole panel) only for
    ``qed``, SA only for ``sa``/``plogp``. The descriptors QED is built from are computed the
    way RDKit's ``QED.properties`` computes them (on the molecule without explicit H), so a
    value does not depend on which others were asked for; QED's 116 structural alerts are
    matched in one C++ pass of a FilterCatalog instead of 116 Python calls (same count).
    """
    names = tuple(dict.fromkeys(names))
    wanted = set(names)
    unknown = wanted - set(PROPERTY_NAMES)
    if unknown:
        raise ValueError(f"unknown properties {sorted(unknown)} (known: {PROPERTY_NAMES})")
    bare = Chem.RemoveHs(mol)
    done: dict[str, float] = {}

    def value(name: str) -> float:
        if name not in done:
            done[name] = float(_DESCRIPTORS[name](bare))
        return done[name]

    out = {name: value(name) for name in PROPERTY_NAMES
           if name in wanted and name in _DESCRIPTORS}
    if "qed" in wanted:
        inputs = QED.QEDproperties(
            MW=value("mw"), ALOGP=value("logp"),
            HBA=sum(len(bare.GetSubstructMatches(p)) for p in QED.Acceptors
                    if bare.HasSubstructMatch(p)),
            HBD=value("hbd"), PSA=value("tpsa"), ROTB=value("rotatable_bonds"),
            AROM=len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(bare), QED.AliphaticRings))),
            ALERTS=len(_qed_alerts().GetMatches(bare)))
        out["qed"] = float(QED.qed(bare, qedProperties=inputs))
    if wanted & {"sa", "plogp"}:
        sa = sa_score(mol)
        if "sa" in wanted:
            out["sa"] = sa
        if "plogp" in wanted:
            out["plogp"] = penalized_logp(mol, value("logp"), sa)
    return {name: out[name] for name in names}


_DESCRIPTORS = {
    "mw": rdMolDescriptors._CalcMolWt,
    "logp": Crippen.MolLogP,
    "tpsa": MolSurf.TPSA,
    "hbd": rdMolDescriptors.CalcNumHBD,
    "hba": Lipinski.NumHAcceptors,
    "rotatable_bonds": lambda m: rdMolDescriptors.CalcNumRotatableBonds(
        m, rdMolDescriptors.NumRotatableBondsOptions.Strict),
    "rings": rdMolDescriptors.CalcNumRings,
    "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
}


@lru_cache(maxsize=1)
def _qed_alerts() -> FilterCatalog.FilterCatalog:
    catalog = FilterCatalog.FilterCatalog()
    for i, alert in enumerate(QED.StructuralAlerts):
        catalog.AddEntry(FilterCatalog.FilterCatalogEntry(f"qed_alert_{i}",
                                                          FilterCatalog.SmartsMatcher(alert)))
    return catalog


def smiles_properties(smiles: str | None) -> dict[str, float]:
    """Properties of a SMILES string; every value NaN when it does not parse."""
    mol = to_mol(smiles)
    if mol is None:
        return dict.fromkeys(PROPERTY_NAMES, math.nan)
    return properties(mol)


@lru_cache(maxsize=1)
def _guacamol_functions() -> list:
    from rdkit.Chem import Descriptors

    return [getattr(Descriptors, name) for name in GUACAMOL_DESCRIPTORS]


def guacamol_descriptors(mol: Chem.Mol, logp: float | None = None) -> list[float]:
    """The descriptors of GuacaMol's KL-divergence benchmark, in :data:`GUACAMOL_DESCRIPTORS`
    order, as RDKit's descriptor calculator that GuacaMol uses gives them (-666 where one
    fails); a non-finite value becomes 0 as GuacaMol does. ``logp`` (Crippen's, a third of
    the cost) may be passed when the property panel has it already."""
    values = []
    for name, function in zip(GUACAMOL_DESCRIPTORS, _guacamol_functions()):
        if name == "MolLogP" and logp is not None:
            values.append(logp)
            continue
        try:
            values.append(function(mol))
        except Exception:  # the calculator's own rule: any failure is -666
            values.append(-666)
    numbers = np.asarray(values, dtype=float)
    numbers[~np.isfinite(numbers)] = 0.0
    return numbers.tolist()
