"""Standardization and properties: the RDKit cases users meet in real files."""

import math

import numpy as np
import pytest

from molvae import chem
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL


def standardized(smiles: str, keep_stereo: bool = True) -> str | None:
    mol, reason = chem.parse_with_reason(smiles)
    assert reason is None, reason
    return chem.canonical_smiles(chem.standardize_mol(mol, keep_stereo=keep_stereo))


@pytest.mark.parametrize("raw, expected", [
    ("O=C([O-])c1ccccc1.[Na+]", "O=C(O)c1ccccc1"),          # salt stripped, neutralized
    ("CCN(CC)CC.Cl", "CCN(CC)CC"),                           # hydrochloride
    ("C[NH3+]", "CN"),                                       # charge neutralized
    ("OC(=O)c1ccccc1OC(C)=O", ASPIRIN),                      # canonical form
    ("CCO.O.O", "CCO"),                                      # solvent dropped
])
def test_standardize_strips_salts_and_charges(raw: str, expected: str) -> None:
    assert standardized(raw) == expected


def test_stereo_kept_or_removed() -> None:
    assert standardized("C[C@H](N)C(=O)O") == "C[C@H](N)C(=O)O"
    assert standardized("C[C@H](N)C(=O)O", keep_stereo=False) == "CC(N)C(=O)O"


@pytest.mark.parametrize("raw, reason_start", [
    ("", chem.RejectReason.EMPTY),
    (None, chem.RejectReason.EMPTY),
    ("not a molecule", chem.RejectReason.UNPARSABLE),
    (INVALID, chem.RejectReason.UNPARSABLE),
    ("C(C)(C)(C)(C)C", chem.RejectReason.VALENCE),
    ("c1cccc1", chem.RejectReason.KEKULIZE),
])
def test_invalid_strings_get_a_reason(raw: str, reason_start: str) -> None:
    mol, reason = chem.parse_with_reason(raw)
    assert mol is None
    assert reason.startswith(reason_start)


def test_filters() -> None:
    tin = chem.to_mol("CC[Sn](CC)(CC)CC")
    assert chem.filter_reason(tin).startswith(chem.RejectReason.ELEMENT)
    assert chem.filter_reason(chem.to_mol("C"), min_heavy_atoms=2).startswith(
        chem.RejectReason.TOO_SMALL)
    assert chem.filter_reason(chem.to_mol("C" * 30), max_heavy_atoms=20).startswith(
        chem.RejectReason.TOO_LARGE)
    assert chem.filter_reason(chem.to_mol(ASPIRIN)) is None


def test_properties_of_aspirin() -> None:
    props = chem.properties(chem.to_mol(ASPIRIN))
    assert set(props) == set(chem.PROPERTY_NAMES)
    assert props["mw"] == pytest.approx(180.16, abs=0.01)
    assert props["heavy_atoms"] == 13
    assert props["qed"] == pytest.approx(0.55, abs=0.01)
    assert 1 <= props["sa"] <= 3
    assert props["plogp"] == pytest.approx(props["logp"] - props["sa"])


def test_penalized_logp_penalizes_large_rings() -> None:
    ring8 = chem.to_mol("C1CCCCCCC1")
    assert chem.penalized_logp(ring8) == pytest.approx(
        chem.properties(ring8)["logp"] - chem.sa_score(ring8) - 2)


def test_bad_smiles_properties_are_nan_not_zero() -> None:
    assert all(math.isnan(v) for v in chem.smiles_properties(INVALID).values())


def test_scaffold_and_similarity() -> None:
    assert chem.scaffold(PARACETAMOL) == "c1ccccc1"
    assert chem.scaffold("CCO") == ""
    assert chem.similarity(ASPIRIN, ASPIRIN) == 1.0
    assert 0 < chem.similarity(ASPIRIN, PARACETAMOL) < 1
    assert math.isnan(chem.similarity(ASPIRIN, INVALID))


def test_neighbour_scores_predict_from_the_most_similar_scored_molecules() -> None:
    neighbours = chem.NeighbourScores(k=2)
    assert np.isnan(neighbours.predict(["CCO"])).all()  # nothing known yet
    neighbours.add(["c1ccccc1C", "c1ccccc1CC", "CCCCCC", "CCCCCCC", "C1CC", INVALID],
                   np.array([1.0, 0.9, 0.1, 0.0, 5.0, 5.0]))
    assert len(neighbours) == 4  # the unparseable ring and the invalid SMILES are skipped
    aromatic, chain, far, bad = neighbours.predict(["c1ccccc1CCC", "CCCCCCCC", "O=C=O", INVALID])
    assert 0.5 < aromatic < 0.95 and 0.05 < chain < 0.5 and np.isnan(bad)
    assert far == pytest.approx(0.5)  # like nothing scored: the mean score
