"""Analogs: molecules decoded near a given molecule's posterior, inside a similarity band.

A VAE's classic use beyond sampling is making more data like a small set. Each parent is
encoded to its posterior N(mu, sigma^2); codes z = mu + s * sigma * eps are decoded greedily,
and the valid, new (not the parent, not seen before) molecules whose Tanimoto similarity to the
parent lies in the band are kept. The spread ``s`` is tuned per parent while it runs: when the
median similarity of a round is above the band the spread grows, below it shrinks, by a factor
that halves (in log scale) at each change of direction, so a parent whose posterior is narrow
(a latent space that reconstructs well) and one whose posterior is wide both reach the band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from molvae import chem
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import require_gaussian

ANALOG_COLUMNS = ("parent_index", "parent", "smiles", "similarity", "spread")


@dataclass
class Spread:
    """One parent's spread s, tuned toward the band (a bisection in log scale)."""

    value: float = 1.0
    step: float = 4.0  # the factor of the next change
    direction: int = 0

    def update(self, median: float, low: float, high: float) -> None:
        direction = 1 if median > high else -1 if median < low else 0
        if direction == 0:
            return
        if self.direction and direction != self.direction:
            self.step = math.sqrt(self.step)
        self.direction = direction
        self.value *= self.step ** direction


def generate_analogs(model: SelfiesVAE, parents: Sequence[str], n: int,
                     band: tuple[float, float] = (0.4, 0.8), rounds: int = 8,
                     per_round: int | None = None, seed: int = 0
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Up to ``n`` analogs per parent SMILES with similarity in ``band``: the analogs
    (ANALOG_COLUMNS) and a summary per parent (analogs found, mean similarity, final spread,
    codes decoded, valid molecules among them, distinct molecules other than the parent, and
    why a parent that could not be encoded has none).

    Each of at most ``rounds`` rounds decodes ``per_round`` codes (default 2n) for every parent
    that still lacks analogs.
    """
    require_gaussian(model, "analog generation")
    low, high = band
    if not 0 <= low < high <= 1:
        raise ValueError(f"the similarity band must satisfy 0 <= low < high <= 1, got {band}")
    if n < 1 or rounds < 1:
        raise ValueError(f"n and rounds must be >= 1, got {n} and {rounds}")
    per_round = per_round or 2 * n
    mu, logvar = model.encode(list(parents))
    # a parent the model encodes has a canonical SMILES (it was canonicalized to be encoded)
    canonical = {i: smiles for i in range(len(parents)) if np.isfinite(mu[i]).all()
                 and (smiles := chem.canonical_smiles(parents[i])) is not None}
    usable = list(canonical)
    spreads = {i: Spread() for i in usable}
    found: dict[int, dict[str, tuple[float, float]]] = {i: {} for i in usable}
    seen: dict[int, set[str]] = {i: {canonical[i]} for i in usable}
    decoded_count = dict.fromkeys(usable, 0)  # codes decoded, and how many gave a molecule
    valid_count = dict.fromkeys(usable, 0)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(rounds):
        active = [i for i in usable if len(found[i]) < n]
        if not active:
            break
        centre = torch.from_numpy(np.repeat(mu[active], per_round, axis=0))
        sigma = torch.from_numpy(np.repeat(np.exp(0.5 * logvar[active]), per_round, axis=0))
        scale = torch.tensor([spreads[i].value for i in active],
                             dtype=torch.float32).repeat_interleave(per_round)[:, None]
        eps = torch.randn(centre.shape, generator=generator)
        decoded = model.decode(centre + scale * sigma * eps)
        for k, i in enumerate(active):
            chunk = decoded[k * per_round:(k + 1) * per_round]
            similarities = [chem.similarity(canonical[i], s) if s else math.nan for s in chunk]
            for smiles, value in zip(chunk, similarities, strict=True):
                if smiles and smiles not in seen[i] and low <= value <= high \
                        and len(found[i]) < n:
                    found[i][smiles] = (value, spreads[i].value)
                if smiles:
                    seen[i].add(smiles)
            valid = [v for v in similarities if not math.isnan(v)]
            decoded_count[i] += len(chunk)
            valid_count[i] += len(valid)
            spreads[i].update(float(np.median(valid)) if valid else 0.0, low, high)
    rows = [(i, canonical[i], smiles, value, spread)
            for i in usable for smiles, (value, spread) in found[i].items()]
    analogs = pd.DataFrame(rows, columns=list(ANALOG_COLUMNS))
    summary = pd.DataFrame([{
        "parent_index": i, "parent": parent, "analogs": len(found.get(i, ())), "asked": n,
        "mean_similarity": float(np.mean([v for v, _ in found[i].values()]))
        if found.get(i) else math.nan,
        "spread": spreads[i].value if i in spreads else math.nan,
        "decoded": decoded_count.get(i, 0), "valid": valid_count.get(i, 0),
        "distinct": len(seen[i]) - 1 if i in seen else 0,  # other than the parent
        "reason": "" if i in spreads else "cannot be encoded (invalid SMILES or tokens the "
                                          "model never saw)",
    } for i, parent in enumerate(parents)])
    return analogs, summary
