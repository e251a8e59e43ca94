"""Each metric on small sets whose answers can be worked out by hand."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from molvae import chem
from molvae.scoring import fcd, features, metrics
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

DRUGS = [ASPIRIN, PARACETAMOL, "CN1CCC[C@H]1c1cccnc1", "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
         "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "O=C(O)c1ccccc1O", "c1ccc2[nH]ccc2c1",
         "CCN(CC)CCOC(=O)c1ccccc1N"]
OTHERS = ["CCCCCCCC", "ClC(Cl)(Cl)Cl", "C1CCCCC1", "OCCO", "CC(C)(C)O"]


def packed(smiles: list[str]) -> np.ndarray:
    return np.array([chem.packed_fingerprint(chem.to_mol(s)) for s in smiles])


def ones(n: int) -> np.ndarray:
    return np.ones(n, dtype=np.int64)


def test_snn_of_a_set_with_itself_is_one_and_lower_against_others() -> None:
    fps = packed(DRUGS)
    value, nearest = metrics.snn(fps, ones(len(DRUGS)), fps, device="cpu")
    assert value == pytest.approx(1.0)
    assert np.allclose(nearest, 1.0)
    other, _ = metrics.snn(packed(OTHERS), ones(len(OTHERS)), fps, device="cpu")
    assert 0.0 <= other < 0.5


def test_similarity_matrix_matches_rdkit_tanimoto() -> None:
    """IntDiv from the vectorized Tanimoto equals 1 - mean over all pairs of RDKit's."""
    pairs = [chem.similarity(a, b) for a, b in itertools.product(DRUGS, repeat=2)]
    expected_p1 = 1 - np.mean(pairs)
    rows = np.array(pairs).reshape(len(DRUGS), len(DRUGS))
    expected_p2 = 1 - np.mean(np.sqrt((rows ** 2).mean(1)))
    diversity = metrics.internal_diversity(packed(DRUGS), ones(len(DRUGS)), (1, 2), "cpu")
    assert diversity[1] == pytest.approx(expected_p1, abs=1e-6)
    assert diversity[2] == pytest.approx(expected_p2, abs=1e-6)


def test_one_repeated_molecule_has_no_diversity_and_unique_one_over_n() -> None:
    fps = packed([ASPIRIN] * 5)
    assert metrics.internal_diversity(fps, ones(5), (1, 2), "cpu") == pytest.approx(
        {1: 0.0, 2: 0.0}, abs=1e-7)
    assert metrics.unique_at_k([ASPIRIN] * 5, 5) == pytest.approx(1 / 5)


def test_counts_weigh_molecules_like_repeated_rows() -> None:
    smiles = [ASPIRIN, PARACETAMOL, OTHERS[0]]
    repeated = packed([ASPIRIN, ASPIRIN, ASPIRIN, PARACETAMOL, OTHERS[0], OTHERS[0]])
    weighted = metrics.internal_diversity(packed(smiles), np.array([3, 1, 2]), (1, 2), "cpu")
    assert weighted == pytest.approx(metrics.internal_diversity(repeated, ones(6), (1, 2), "cpu"))
    snn_weighted, _ = metrics.snn(packed(smiles), np.array([3, 1, 2]), packed(DRUGS), "cpu")
    snn_repeated, _ = metrics.snn(repeated, ones(6), packed(DRUGS), "cpu")
    assert snn_weighted == pytest.approx(snn_repeated)


def test_nearest_similarity_can_leave_out_each_molecule_itself() -> None:
    fps = packed([ASPIRIN, ASPIRIN, OTHERS[0]])
    nearest = metrics.nearest_similarity(fps, fps, "cpu", exclude_self=True)
    assert nearest[:2] == pytest.approx([1.0, 1.0])  # the two aspirins see each other
    assert nearest[2] < 0.3


def test_unique_at_k_counts_the_first_k_and_is_undefined_below_k() -> None:
    valid = ["A", "B", "A", "C", "C", "D"]
    assert metrics.unique_at_k(valid, 4) == pytest.approx(3 / 4)
    with pytest.raises(metrics.UndefinedMetric, match="only 6 valid molecules"):
        metrics.unique_at_k(valid, 10)


def test_novelty_is_zero_for_training_molecules_and_one_for_new_ones() -> None:
    assert metrics.novelty(DRUGS, set(DRUGS))[0] == 0.0
    value, flags = metrics.novelty(DRUGS[:2] + OTHERS[:2], set(DRUGS))
    assert value == 0.5 and flags.tolist() == [False, False, True, True]
    with pytest.raises(metrics.UndefinedMetric):
        metrics.novelty([], set(DRUGS))


def test_fragment_and_scaffold_similarity_of_identical_sets_is_one() -> None:
    mols = [chem.to_mol(s) for s in DRUGS]
    fragments = metrics.weighted_counter([Counter(chem.brics_fragments(m)) for m in mols],
                                         ones(len(mols)))
    scaffolds = metrics.weighted_counter([chem.ring_scaffold(m) for m in mols], ones(len(mols)))
    assert metrics.cosine_similarity(fragments, fragments) == pytest.approx(1.0)
    assert metrics.cosine_similarity(scaffolds, scaffolds) == pytest.approx(1.0)
    assert metrics.cosine_similarity(Counter(a=1), Counter(b=2)) == pytest.approx(0.0)
    with pytest.raises(metrics.UndefinedMetric):
        metrics.cosine_similarity(scaffolds, Counter())


def test_ring_scaffold_needs_two_rings_like_moses() -> None:
    assert chem.ring_scaffold(chem.to_mol("c1ccc2[nH]ccc2c1")) == "c1ccc2[nH]ccc2c1"
    assert chem.ring_scaffold(chem.to_mol(ASPIRIN)) is None  # one ring only
    assert chem.ring_scaffold(chem.to_mol("CCO")) is None


def test_wasserstein_of_identical_values_is_zero_and_of_a_shift_is_the_shift() -> None:
    values = np.array([1.0, 2.0, 4.0, 8.0])
    assert metrics.property_distance(values, ones(4), values) == 0.0
    assert metrics.property_distance(values + 0.5, ones(4), values) == pytest.approx(0.5)
    assert metrics.property_distance(np.array([1.0, 2.0]), np.array([3, 1]),
                                     np.array([1.0, 1.0, 1.0, 2.0])) == pytest.approx(0.0)


def test_validity_counts_every_kind_of_bad_input() -> None:
    raw = [ASPIRIN, INVALID, "", "((((", "C" * 500, "[Xx]", None, math.nan, "C☃", "C(C)(C)(C)(C)C",
           PARACETAMOL, ASPIRIN]
    parsed = features.parse_set(raw, workers=1)
    valid = [s is not None for s in parsed.canonical]
    assert valid == [True, False, False, False, True, False, False, False, False, False, True,
                     True]
    assert all(r is not None for r, ok in zip(parsed.reasons, valid) if not ok)
    assert parsed.reasons[2] == parsed.reasons[6] == chem.RejectReason.EMPTY
    assert parsed.reasons[8] == features.NON_ASCII
    assert parsed.reasons[9].startswith(chem.RejectReason.VALENCE)
    smiles, counts = parsed.unique_counts()
    assert len(smiles) == 3 and counts.tolist() == [2, 1, 1]


def test_moses_filters_reject_charges_big_rings_odd_atoms_and_alerts() -> None:
    nitro = chem.smarts_catalog(("[N+](=O)[O-]", "[#6]-[#1]"))  # the second needs the Hs
    empty = chem.smarts_catalog(("[Se]",))
    assert chem.passes_moses_filters(chem.to_mol("CCO"), empty)
    assert not chem.passes_moses_filters(chem.to_mol("CCO"), nitro)
    assert not chem.passes_moses_filters(chem.to_mol("C[N+](C)(C)C"), empty)
    assert not chem.passes_moses_filters(chem.to_mol("C1CCCCCCC1"), empty)
    assert not chem.passes_moses_filters(chem.to_mol("CCI"), empty)


def test_fcd_math_matches_fcd_torch_and_duplicates_match_counts() -> None:
    from fcd_torch.utils import calculate_frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(1.0, 2.0, size=(50, 8))
    ref = (a.mean(0), np.cov(a.T))
    gen = fcd.weighted_mean_cov(b, ones(50))
    assert fcd.frechet_distance(ref, gen) == pytest.approx(
        calculate_frechet_distance(*ref, *gen), rel=1e-6)
    assert fcd.frechet_distance(ref, ref) == pytest.approx(0.0, abs=1e-6)
    mu, sigma = fcd.weighted_mean_cov(b[:2], np.array([2, 1]))
    assert np.allclose(sigma, np.cov(b[[0, 0, 1]].T)) and np.allclose(mu, b[[0, 0, 1]].mean(0))


def test_kl_score_is_one_for_identical_sets_and_lower_for_different_ones() -> None:
    rng = np.random.default_rng(1)
    continuous = rng.normal(size=(200, 2))
    discrete = rng.integers(0, 5, size=(200, 2)).astype(float)
    reference = np.hstack([continuous, discrete])
    similarity = rng.uniform(size=200)
    names = ["a", "b", "c", "d"]
    same, reasons = metrics.kl_divergences(reference, reference, names, 2, similarity,
                                           similarity)
    assert not reasons and metrics.kl_score(same) == pytest.approx(1.0, abs=1e-6)
    shifted = reference + np.array([2.0, 0.0, 1.0, 0.0])
    other, _ = metrics.kl_divergences(reference, shifted, names, 2, similarity, similarity)
    assert metrics.kl_score(other) < 0.9 and other["a"] > 0.5 and other["c"] > 0.1


def test_kl_of_constant_values_is_undefined_with_a_reason() -> None:
    constant = np.ones((10, 1))
    divergences, reasons = metrics.kl_divergences(constant, constant, ["x"], 1, np.ones(10),
                                                  np.ones(10))
    assert divergences["x"] is None and "identical" in reasons["x"]
    with pytest.raises(metrics.UndefinedMetric, match="x"):
        metrics.kl_score(divergences)


def test_fcd_of_a_set_with_itself_is_zero_and_positive_against_others() -> None:
    weights = ones(len(DRUGS))
    drugs = fcd.chemnet_statistics(DRUGS, weights, "cpu")
    others = fcd.chemnet_statistics(OTHERS, ones(len(OTHERS)), "cpu")
    assert fcd.frechet_distance(drugs, drugs) == pytest.approx(0.0, abs=1e-3)
    assert fcd.frechet_distance(drugs, others) > 1.0


def test_chemnet_activations_match_fcd_torch() -> None:
    ours = fcd.chemnet_activations(DRUGS, "cpu")
    assert np.array_equal(ours, fcd._chemnet("cpu", 512, 1).get_predictions(DRUGS))
