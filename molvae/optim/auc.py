"""Two areas under a top-10 curve, named apart because they are not the same number.

* :func:`auc_every_call`: what ``molvae optimize`` reports as ``auc_top10``: the top-10 mean
  of the solutions after every oracle call, averaged over the budget. Read at every call, it
  needs no sampling grid and is exact for any budget, however small.
* :func:`pmo_auc`: the PMO benchmark's published metric (Gao et al. 2022): the top-k mean read
  every ``freq`` calls and at the last call, from 0 before the first call, integrated by the
  trapezoid rule. ``benchmarks/pmo.py`` reports it, so its numbers compare with the paper's.

Both extend a run that stopped early flat at its last value up to the budget, so stopping
early is never rewarded, and both are divided by the budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOP_K = 10


def auc_every_call(curve: Sequence[float], budget: int) -> float:
    """Mean of a curve read after each call (NaN, no solution yet, counts 0) over ``budget``
    calls."""
    values = np.nan_to_num(np.asarray(curve, dtype=float), nan=0.0)
    if not len(values):
        return 0.0
    padded = np.concatenate([values, np.full(budget - len(values), values[-1])])
    return float(padded.mean())


def top_k_mean(scores: np.ndarray, k: int = TOP_K) -> float:
    """Mean of the ``k`` best (of all there are when fewer); 0 for none."""
    if not len(scores):
        return 0.0
    return float(np.mean(np.sort(scores)[::-1][:k]))


def pmo_auc(scores: Sequence[float], budget: int, k: int = TOP_K, freq: int = 100) -> float:
    """PMO's AUC of the top-k mean against oracle calls, divided by the budget (PMO's
    ``top_auc`` with ``finish=True``); ``scores`` in call order."""
    paid = np.asarray(scores, dtype=float)[:budget]
    n = len(paid)
    if n == 0:
        return 0.0
    area, previous_calls, previous_value = 0.0, 0, 0.0
    for calls in [*range(freq, n, freq), n]:
        value = top_k_mean(paid[:calls], k)
        area += (calls - previous_calls) * (value + previous_value) / 2
        previous_calls, previous_value = calls, value
    area += (budget - n) * previous_value
    return area / budget
