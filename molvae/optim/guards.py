"""Guards next to the objective: what a molecule must pass to count as a solution.

Why: an optimizer climbs whatever the objective rewards, and a decoder writes long chains,
macrocycles and reactive groups easily, so the winners of an unguarded search are often
molecules nobody would make. The defaults are the ones ``molvae optimize`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Guards:
    """The guards; None (or False) switches a guard off.

    Attributes:
        max_sa: largest synthetic accessibility score (1 easy .. 10 hard).
        max_ring_size: largest ring allowed (macrocycles decode easily but are rarely wanted).
        max_heavy_atoms: largest molecule in heavy atoms.
        max_tokens: largest molecule in SELFIES tokens.
        pains: reject molecules matching a PAINS alert.
        known: canonical SMILES that are not solutions, e.g. the training set when only new
            molecules are wanted.
        radicals: reject molecules with unpaired electrons.
    """

    max_sa: float | None = None
    max_ring_size: int | None = 8
    max_heavy_atoms: int | None = None
    max_tokens: int | None = None
    pains: bool = True
    known: frozenset[str] = frozenset()
    radicals: bool = True

    def failures(self, record: dict[str, Any]) -> list[str]:
        """Why a scored molecule fails the guards (empty when it passes)."""
        limits = (("sa", self.max_sa), ("largest_ring", self.max_ring_size),
                  ("heavy_atoms", self.max_heavy_atoms), ("n_tokens", self.max_tokens))
        failed = [f"{key} {record[key]:g} > {limit:g}" for key, limit in limits
                  if limit is not None and not record[key] <= limit]
        if self.pains and not record["pains"] == 0:
            failed.append(f"pains alerts {record['pains']:g}")
        if self.radicals and not record["radicals"] == 0:
            failed.append(f"radical electrons {record['radicals']:g}")
        if record["smiles"] in self.known:
            failed.append("in the training set")
        return failed
