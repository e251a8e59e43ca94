"""benchmarks/cpu_recipe.py's ring counts: SELFIES' broken aromatic rings are told apart."""

import pytest

from benchmarks.cpu_recipe import ring_counts


@pytest.mark.parametrize("smiles, aromatic, aliphatic, broken", [
    ("c1ccccc1", 1, 0, 0),
    ("C1=CC=CCC1", 0, 1, 1),       # a benzene one token short: two double bonds, not aromatic
    ("C1=CCCCC1", 0, 1, 0),        # one double bond: an ordinary ring
    ("O=C1C=CC(=O)C=C1", 0, 1, 1),  # quinone: conjugated but not aromatic, rare in MOSES
])
def test_broken_rings_are_conjugated_rings_that_are_not_aromatic(
        smiles: str, aromatic: int, aliphatic: int, broken: int) -> None:
    counts = ring_counts([smiles])
    assert (counts["aromatic_rings"], counts["aliphatic_rings"], counts["broken_rings"]) == \
        (aromatic, aliphatic, broken)
