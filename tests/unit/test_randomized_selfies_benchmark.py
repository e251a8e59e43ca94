"""benchmarks/randomized_selfies.py counts spellings outside the vocabulary and its length."""

from benchmarks.randomized_selfies import measure
from molvae.data.tokens import Vocab, smiles_to_selfies, split_selfies

SMILES = ["CC(=O)Nc1ccc(O)cc1", "c1ccc2[nH]ccc2c1", "O=C(O)C1CCCN1"]


def test_spellings_outside_the_vocabulary_or_its_length_are_counted() -> None:
    canonical = [smiles_to_selfies(s) for s in SMILES]
    row = measure(SMILES, canonical, Vocab.build(["[C]"]), draws=4, train_size=100)
    assert row["round_trip"] == 1.0 and row["encoded"] == 1.0 and row["distinct_of_k"] > 1
    assert row["in_vocab"] == 0.0 and row["within_max_length"] == 0.0
    assert row["canonical_max_length"] == max(len(split_selfies(s)) for s in canonical)
