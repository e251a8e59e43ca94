"""SELFIES vocabulary: build, encode, decode, save/load."""

from pathlib import Path

import pytest

from molvae.data import tokens
from tests.conftest import ASPIRIN, PARACETAMOL


def test_vocab_round_trip(tmp_path: Path) -> None:
    selfies = [tokens.smiles_to_selfies(s) for s in (ASPIRIN, PARACETAMOL)]
    vocab = tokens.Vocab.build(selfies)
    assert vocab.tokens[:4] == list(tokens.SPECIALS)
    for smiles, s in zip((ASPIRIN, PARACETAMOL), selfies):
        ids = vocab.encode(s)
        assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
        assert vocab.decode(ids) == s
        assert vocab.to_smiles(ids) == smiles
    assert vocab.max_length == max(len(tokens.split_selfies(s)) for s in selfies)
    loaded = tokens.Vocab.load(vocab.save(tmp_path / "vocab.json"))
    assert loaded.tokens == vocab.tokens and loaded.max_length == vocab.max_length


def test_unknown_tokens_and_stop_at_eos() -> None:
    vocab = tokens.Vocab.build(["[C][O]"])
    ids = vocab.encode("[C][N]")
    assert ids[2] == vocab.unk_id
    assert vocab.decode([vocab.bos_id, vocab.index["[C]"], vocab.eos_id, vocab.index["[O]"]]) \
        == "[C]"


def test_vocab_must_start_with_specials() -> None:
    with pytest.raises(ValueError, match="special tokens"):
        tokens.Vocab(["[C]", "<pad>"])


def test_tokenize_reads_every_input_once_and_says_why_a_row_is_unusable() -> None:
    vocab = tokens.Vocab.build([tokens.smiles_to_selfies(s) for s in (ASPIRIN, PARACETAMOL)])
    read = tokens.tokenize(vocab, ["OC(=O)c1ccccc1OC(C)=O", "C1CC(C", None, "CC[Se]C"])
    assert read.smiles[0] == ASPIRIN  # canonicalized first, as the training data was
    assert read.ids[0] == vocab.encode(tokens.smiles_to_selfies(ASPIRIN))
    assert read.ids[1:] == [None, None, None] and read.reasons[0] is None
    assert "syntax error" in read.reasons[1] and read.reasons[2] == "empty SMILES"
    # a molecule with tokens outside the vocabulary keeps its SMILES and tokens, not ids
    assert read.smiles[3] == "CC[Se]C" and "[Se]" in read.tokens[3]
    assert read.reasons[3] == tokens.unseen_reason(["[Se]"])
