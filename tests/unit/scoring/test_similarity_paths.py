"""The CPU bit-sum Tanimoto and the accelerator's matrix-product Tanimoto give the same
float32 values, so SNN and IntDiv do not depend on the device (both are MOSES's numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from molvae.scoring import metrics


def random_fingerprints(n: int, bits: int, density: float, seed: int) -> np.ndarray:
    """Packed fingerprints with a few empty and a few dense (>= 256 bits) rows."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n, bits)) < density
    dense[0] = False
    dense[1] = rng.random(bits) < 0.4
    return np.packbits(dense, axis=1)


def full_matrix(blocks, n_query: int, n_reference: int) -> np.ndarray:
    out = np.full((n_query, n_reference), np.nan, dtype=np.float32)
    for rows, cols, sim in blocks:
        out[rows, cols] = sim.cpu().numpy()
    return out


@pytest.mark.parametrize("bits", [1024, 4096])
def test_bit_sums_equal_the_matrix_product_bit_for_bit(bits: int) -> None:
    query = random_fingerprints(37, bits, 0.04, seed=1)
    reference = np.concatenate([random_fingerprints(301, bits, 0.04, seed=2), query[:1]])
    cpu = full_matrix(metrics._bit_blocks(query, reference, block=8), len(query), len(reference))
    product = full_matrix(metrics._matmul_blocks(query, reference, torch.device("cpu"), 64),
                          len(query), len(reference))
    assert not np.isnan(cpu).any()
    assert np.array_equal(cpu, product)
    assert cpu[0, -1] == 1.0  # two empty fingerprints: similarity 1, as in MOSES


def test_snn_and_internal_diversity_agree_with_the_product_path(monkeypatch) -> None:
    query = random_fingerprints(50, 1024, 0.04, seed=3)
    reference = random_fingerprints(500, 1024, 0.04, seed=4)
    weights = np.arange(1, 51)
    cpu_snn = metrics.snn(query, weights, reference, "cpu")[0]
    cpu_div = metrics.internal_diversity(query, weights, (1, 2), "cpu")
    monkeypatch.setattr(metrics, "_bit_blocks", lambda q, r, block: metrics._matmul_blocks(
        q, r, torch.device("cpu"), block))
    assert metrics.snn(query, weights, reference, "cpu")[0] == cpu_snn
    assert metrics.internal_diversity(query, weights, (1, 2), "cpu") == cpu_div
