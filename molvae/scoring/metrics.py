"""Set-level generation-quality metrics, defined as MOSES (molsets 0.3.1) and GuacaMol define them.

The functions take precomputed per-molecule data (packed fingerprints, counters, property
values) rather than SMILES, so each molecule's chemistry is computed once (in
``molvae.scoring.features``) and the set statistics of a reference can be cached. Repeated
generated molecules are passed once with a count (``weights``); every metric weighs them so
that the result equals MOSES's, which keeps duplicates in its lists.

A metric that is not defined for its input (too few molecules, nothing to compare) raises
:class:`UndefinedMetric` with a reason a person can read; it is never silently NaN.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cosine
from scipy.stats import entropy, gaussian_kde, wasserstein_distance
from tqdm.auto import tqdm

from molvae.devices import choose_device

log = logging.getLogger(__name__)

BLOCK_ROWS = 4096


class UndefinedMetric(ValueError):
    """The metric has no value for this input; the message says why."""


@dataclass
class Report:
    """Metrics in order of computation; an undefined metric is None with its reason in
    ``notes`` (so a report never holds a silent NaN)."""

    metrics: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, compute: Callable[[], Any],
            pick: Callable[[Any], float] = lambda result: result) -> Any:
        """Record ``pick(compute())`` as metric ``name``; returns what ``compute`` returned,
        or None when the metric is undefined (then recorded as None with the reason)."""
        try:
            result = compute()
        except UndefinedMetric as why:
            self.skip(name, str(why))
            return None
        value = float(pick(result))
        if not math.isfinite(value):
            self.skip(name, f"the computation gave {value}")
            return None
        self.metrics[name] = value
        return result

    def skip(self, name: str, reason: str) -> None:
        self.metrics[name] = None
        self.notes[name] = reason


def _unpacked(packed: np.ndarray, device: torch.device) -> torch.Tensor:
    """0/1 float matrix from ``np.packbits`` rows, unpacked on ``device`` (moves 8x less)."""
    data = torch.from_numpy(np.ascontiguousarray(packed)).to(device)
    shifts = torch.arange(7, -1, -1, device=device, dtype=torch.uint8)
    return ((data.unsqueeze(-1) >> shifts) & 1).reshape(len(packed), -1).float()


def _matmul_blocks(query: np.ndarray, reference: np.ndarray, device: torch.device,
                   block: int) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Tanimoto on an accelerator: intersections are a float32 matrix product (exact for 0/1
    vectors), as MOSES does with torch."""
    for q0 in range(0, len(query), block):
        queries = _unpacked(query[q0:q0 + block], device)
        query_counts = queries.sum(1, keepdim=True)
        for r0 in range(0, len(reference), block):
            refs = _unpacked(reference[r0:r0 + block], device)
            inter = queries @ refs.T
            union = query_counts + refs.sum(1) - inter
            sim = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))
            yield slice(q0, q0 + len(queries)), slice(r0, r0 + len(refs)), sim


def _bit_rows(query: np.ndarray, columns: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Tanimoto of each packed query against every reference, from the reference stored bit by
    bit (``columns[b]`` = which references have bit b).

    A Morgan fingerprint sets ~40 of 1024 bits, so summing the query's ~40 bit rows costs ~25x
    fewer operations than a dense product over all 1024. Intersections stay integers (uint8 is
    exact while the query has < 256 bits) and the division is float32, as in MOSES.
    """
    out = np.ones((len(query), columns.shape[1]), dtype=np.float32)
    for row, bits in zip(out, np.unpackbits(query, axis=1)):
        on = np.flatnonzero(bits)
        if len(on) == 0:  # empty query: similarity 0, or 1 to an empty reference (MOSES)
            row[counts > 0] = 0.0
            continue
        inter = np.zeros(columns.shape[1], dtype=np.uint8 if len(on) < 256 else np.uint16)
        for bit in on:
            np.add(inter, columns[bit], out=inter)
        np.divide(inter, counts + (len(on) - inter.astype(np.int32)), out=row, dtype=np.float32)
    return out


def _bit_blocks(query: np.ndarray, reference: np.ndarray, block: int
                ) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Tanimoto on the CPU: bit sums (:func:`_bit_rows`), query blocks spread over threads
    (numpy releases the GIL), against the whole reference at once."""
    packed_columns = np.ascontiguousarray(reference.T)  # transposing packed moves 8x less
    columns = np.empty((8 * reference.shape[1], len(reference)), dtype=np.uint8)
    for k in range(8):  # bit 8i + k is bit k (most significant first) of byte i
        np.bitwise_and(packed_columns >> (7 - k), 1, out=columns[k::8])
    counts = columns.sum(0, dtype=np.int32)
    threads = max(1, torch.get_num_threads())
    with ThreadPoolExecutor(threads) as pool:
        for w0 in range(0, len(query), block * threads):  # a window per round: bounded memory
            starts = range(w0, min(len(query), w0 + block * threads), block)
            sims = [pool.submit(_bit_rows, query[q0:q0 + block], columns, counts)
                    for q0 in starts]
            for q0, sim in zip(starts, sims):
                rows = slice(q0, min(q0 + block, len(query)))
                yield rows, slice(0, len(reference)), torch.from_numpy(sim.result())


def _similarity_blocks(query: np.ndarray, reference: np.ndarray, device: torch.device,
                       desc: str) -> Iterator[tuple[slice, slice, torch.Tensor]]:
    """Tanimoto similarities of packed fingerprints, block by block (query rows × reference
    columns), so memory stays bounded for sets of any size. Two empty fingerprints count as
    similarity 1, as in MOSES. Both paths give MOSES's float32 values bit for bit."""
    if device.type == "cpu":
        block = max(1, min(BLOCK_ROWS, (1 << 25) // max(1, 4 * len(reference))))
        blocks: Iterator = _bit_blocks(query, reference, block)
        total = -(-len(query) // block)
    else:
        blocks = _matmul_blocks(query, reference, device, BLOCK_ROWS)
        total = -(-len(query) // BLOCK_ROWS) * -(-len(reference) // BLOCK_ROWS)
    with tqdm(total=total, desc=desc, unit="block", leave=False) as bar:
        for item in blocks:
            yield item
            bar.update()


def nearest_similarity(query: np.ndarray, reference: np.ndarray, device: str = "auto",
                       exclude_self: bool = False) -> np.ndarray:
    """For each query fingerprint, the Tanimoto similarity of its nearest reference.

    Args:
        query, reference: packed Morgan fingerprints (rows = molecules).
        exclude_self: query and reference are the same set; ignore the diagonal (GuacaMol's
            internal similarity sets it to zero).
    """
    if len(reference) == 0:
        raise UndefinedMetric("the reference set has no valid molecules")
    best = torch.zeros(len(query), device=choose_device(device))
    for rows, cols, sim in _similarity_blocks(query, reference, choose_device(device),
                                              "nearest neighbours"):
        if exclude_self:
            overlap = range(max(rows.start, cols.start), min(rows.stop, cols.stop))
            index = torch.as_tensor(list(overlap), device=sim.device, dtype=torch.long)
            sim[index - rows.start, index - cols.start] = 0.0
        best[rows] = torch.maximum(best[rows], sim.max(1).values)
    return best.cpu().numpy().astype(float)


def snn(query: np.ndarray, weights: np.ndarray, reference: np.ndarray,
        device: str = "auto") -> tuple[float, np.ndarray]:
    """MOSES SNN: mean over generated molecules of the Tanimoto similarity to the nearest
    reference molecule (Morgan r=2, 1024 bits). Returns (SNN, per-molecule similarity)."""
    if len(query) == 0:
        raise UndefinedMetric("no valid generated molecules")
    nearest = nearest_similarity(query, reference, device)
    return float(np.average(nearest, weights=weights)), nearest


def internal_diversity(fingerprints: np.ndarray, weights: np.ndarray,
                       powers: Sequence[int] = (1, 2), device: str = "auto") -> dict[int, float]:
    """MOSES IntDiv_p = 1 - mean_i (mean_j T(i, j)^p)^(1/p) over all pairs, self-pairs included.

    Returns ``{p: IntDiv_p}``; IntDiv is p=1 and IntDiv2 is p=2.
    """
    if len(fingerprints) == 0:
        raise UndefinedMetric("no valid generated molecules")
    dev = choose_device(device)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float32), device=dev)
    sums = {p: torch.zeros(len(fingerprints), device=dev) for p in powers}
    for rows, cols, sim in _similarity_blocks(fingerprints, fingerprints, dev,
                                              "internal diversity"):
        for p in powers:
            sums[p][rows] += (sim if p == 1 else sim ** p) @ w[cols]
    total = float(w.sum())
    out = {}
    for p in powers:
        per_molecule = (sums[p] / total).cpu().numpy().astype(float) ** (1.0 / p)
        out[p] = 1.0 - float(np.average(per_molecule, weights=weights))
    return out


def cosine_similarity(reference: Counter, generated: Counter) -> float:
    """MOSES Frag/Scaf: cosine similarity of two count vectors keyed by SMILES."""
    if not reference:
        raise UndefinedMetric("the reference set has nothing to count")
    if not generated:
        raise UndefinedMetric("the generated set has nothing to count")
    keys = sorted(set(reference) | set(generated))
    ref = np.array([reference.get(k, 0) for k in keys], dtype=float)
    gen = np.array([generated.get(k, 0) for k in keys], dtype=float)
    return float(1.0 - cosine(ref, gen))


def weighted_counter(per_molecule: Sequence[Counter | str | None], weights: np.ndarray) -> Counter:
    """Total counts over a set where molecule i occurs ``weights[i]`` times; a string item is
    one count of itself, None is nothing."""
    total: Counter = Counter()
    for item, weight in zip(per_molecule, weights):
        if item is None:
            continue
        if isinstance(item, str):
            total[item] += int(weight)
        else:
            for key, count in item.items():
                total[key] += count * int(weight)
    return total


def unique_at_k(canonical_valid: Sequence[str], k: int) -> float:
    """MOSES unique@k: distinct molecules among the first k valid ones, divided by k.

    MOSES warns and divides by the number available when there are fewer than k; here that
    case is undefined.
    """
    if len(canonical_valid) < k:
        share = len(set(canonical_valid)) / len(canonical_valid) if canonical_valid else None
        moses = f"; MOSES would report {share:.4f} over all of them" if share is not None else ""
        raise UndefinedMetric(f"only {len(canonical_valid)} valid molecules (< {k}){moses}")
    return len(set(canonical_valid[:k])) / k


def novelty(unique_generated: Sequence[str], train: set[str]) -> tuple[float, np.ndarray]:
    """MOSES Novelty: share of unique valid generated molecules not in the training set.

    Returns (novelty, per-molecule novel flags).
    """
    if not unique_generated:
        raise UndefinedMetric("no valid generated molecules")
    novel = np.array([s not in train for s in unique_generated], dtype=bool)
    return float(novel.mean()), novel


def property_distance(generated: np.ndarray, weights: np.ndarray, reference: np.ndarray,
                      reference_weights: np.ndarray | None = None) -> float:
    """MOSES logP/SA/QED/weight: Wasserstein-1 distance between the two value distributions."""
    if len(generated) == 0:
        raise UndefinedMetric("no valid generated molecules")
    if len(reference) == 0:
        raise UndefinedMetric("the reference set has no valid molecules")
    return float(wasserstein_distance(generated, reference, weights, reference_weights))


def continuous_kl(reference: np.ndarray, generated: np.ndarray) -> float:
    """GuacaMol's KL divergence of two samples via Gaussian KDEs on 1000 shared points."""
    try:
        kde_ref, kde_gen = gaussian_kde(reference), gaussian_kde(generated)
    except (np.linalg.LinAlgError, ValueError) as err:
        raise UndefinedMetric(f"kernel density estimate failed ({err}); too few or identical "
                              "values") from None
    both = np.concatenate([reference, generated])
    grid = np.linspace(both.min(), both.max(), num=1000)
    return float(entropy(kde_ref(grid) + 1e-10, kde_gen(grid) + 1e-10))


def discrete_kl(reference: np.ndarray, generated: np.ndarray) -> float:
    """GuacaMol's KL divergence of integer descriptors via 10-bin histograms of the reference."""
    ref_hist, bins = np.histogram(reference, bins=10, density=True)
    gen_counts, _ = np.histogram(generated, bins=bins)
    if gen_counts.sum() == 0:
        raise UndefinedMetric("no generated value falls in the reference's range")
    gen_hist, _ = np.histogram(generated, bins=bins, density=True)
    return float(entropy(ref_hist + 1e-10, gen_hist + 1e-10))


def kl_divergences(reference: np.ndarray, generated: np.ndarray, names: Sequence[str],
                   n_continuous: int, reference_similarity: np.ndarray,
                   generated_similarity: np.ndarray
                   ) -> tuple[dict[str, float | None], dict[str, str]]:
    """GuacaMol's KL divergences: physchem descriptors (the first ``n_continuous`` by KDE, the
    rest by histogram) and the internal nearest-neighbour similarity (by KDE).

    Returns (KL per descriptor, None where undefined; the reasons for the undefined ones).
    """
    if len(generated) < 2 or len(reference) < 2:
        raise UndefinedMetric(f"needs at least 2 unique molecules on each side "
                              f"({len(generated)} generated, {len(reference)} reference)")
    columns = [(name, reference[:, i], generated[:, i], i < n_continuous)
               for i, name in enumerate(names)]
    columns.append(("internal_similarity", reference_similarity, generated_similarity, True))
    divergences: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for name, ref, gen, continuous in columns:
        try:
            divergences[name] = continuous_kl(ref, gen) if continuous else discrete_kl(ref, gen)
        except UndefinedMetric as why:
            divergences[name], reasons[name] = None, str(why)
    return divergences, reasons


def kl_score(divergences: dict[str, float | None]) -> float:
    """GuacaMol's KL-divergence benchmark score: the mean of exp(-KL) over all divergences."""
    missing = [name for name, value in divergences.items() if value is None]
    if missing:
        raise UndefinedMetric(f"KL divergence undefined for {', '.join(missing)}")
    return float(np.mean([np.exp(-value) for value in divergences.values()
                          if value is not None]))
