"""Fréchet ChemNet Distance: ChemNet activations (fcd_torch's model), their statistics, and
the distance between two sets' statistics."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from molvae.devices import choose_device
from molvae.scoring.metrics import UndefinedMetric

if TYPE_CHECKING:
    from fcd_torch import FCD


def weighted_mean_cov(activations: np.ndarray, weights: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of rows repeated ``weights`` times (what fcd_torch computes on the
    list with duplicates)."""
    counts = np.asarray(weights, dtype=np.int64)
    mu = np.average(activations, axis=0, weights=counts)
    sigma = np.cov(activations.T, fweights=counts)
    return mu, sigma


@lru_cache(maxsize=2)
def _chemnet(device: str, batch_size: int, workers: int) -> FCD:
    from fcd_torch import FCD

    return FCD(device=device, n_jobs=workers, batch_size=batch_size)


def chemnet_activations(smiles: Sequence[str], device: str = "auto", batch_size: int = 512,
                        workers: int = 1) -> np.ndarray:
    """ChemNet's penultimate activations [N, 512], as fcd_torch's ``get_predictions``.

    fcd_torch's own loop keeps each batch's output, which on the CPU is a view of the whole
    last LSTM sequence: about 185 KB per molecule, so the MOSES test set (176k) needs over
    30 GB. Copying each batch's rows keeps only the 2 KB per molecule the statistics need.
    """
    from fcd_torch.utils import SmilesDataset, todevice
    from torch.utils.data import DataLoader

    fcd = _chemnet(str(choose_device(device)), batch_size, workers)
    loader = DataLoader(SmilesDataset(list(smiles), canonize=fcd.canonize),
                        batch_size=fcd.batch_size, num_workers=fcd.n_jobs)
    batches = []
    with todevice(fcd.model, fcd.device), torch.no_grad():
        for batch in tqdm(loader, desc="ChemNet", unit="batch", leave=False):
            output = fcd.model(batch.transpose(1, 2).float().to(fcd.device))
            batches.append(output.cpu().numpy().copy())
    return np.concatenate(batches) if batches else np.zeros((0, 512), dtype=np.float32)


def chemnet_statistics(smiles: Sequence[str], weights: np.ndarray, device: str = "auto",
                       batch_size: int = 512, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ChemNet activation mean and covariance of a set (fcd_torch's ``precalc``)."""
    if np.sum(weights) < 2:
        raise UndefinedMetric("FCD needs at least 2 valid molecules")
    return weighted_mean_cov(chemnet_activations(smiles, device, batch_size, workers), weights)


def frechet_distance(reference: tuple[np.ndarray, np.ndarray],
                     generated: tuple[np.ndarray, np.ndarray]) -> float:
    """FCD: ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2), as in fcd_torch.

    Tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues of the symmetric
    sqrt(S1) S2 sqrt(S1); two symmetric eigendecompositions give it several times faster
    than the general matrix square root fcd_torch calls, with the same value.
    """
    (mu1, sigma1), (mu2, sigma2) = reference, generated
    values, vectors = np.linalg.eigh(sigma1)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root @ sigma2 @ root), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
