"""Randomized-SMILES augmentation: new spellings of the same molecules, fixed by seed and
epoch, so a resumed run trains on what an uninterrupted one would."""

from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem

from molvae.config import from_dict
from molvae.data import respell
from molvae.data.batching import TokenDataset, load_prepared
from molvae.data.respell import epoch_spellings, random_selfies, respelled
from molvae.data.tokens import Vocab, selfies_to_smiles
from molvae.model.store import load_model
from molvae.training.config import TrainConfig
from molvae.training.loop import TrainResult, train_model


def test_random_selfies_spell_one_molecule_many_ways_and_repeat_by_seed() -> None:
    written = random_selfies("CC(=O)Nc1ccc(O)cc1", 8, seed=3)
    assert len(set(written)) > 1
    assert {selfies_to_smiles(s) for s in written} == {Chem.CanonSmiles("CC(=O)Nc1ccc(O)cc1")}
    assert random_selfies("CC(=O)Nc1ccc(O)cc1", 8, seed=3) == written
    assert random_selfies("not a molecule", 8, seed=3) == []


def test_an_epochs_spellings_are_its_molecules_and_its_own(prepared_dir: Path) -> None:
    data = load_prepared(prepared_dir, train_smiles=True)
    smiles = data.train_smiles
    first, kept = respelled(smiles, data.train, data.vocab, seed=0, epoch=0)
    assert kept < 5 and len(first) == len(smiles)  # the 100-molecule vocabulary misses few
    decoded = [data.vocab.to_smiles(first.tokens[i, :first.lengths[i]]) for i in range(len(first))]
    assert decoded == [Chem.CanonSmiles(s) for s in smiles]
    changed = [not np.array_equal(first.tokens[i, :first.lengths[i]],
                                  data.train.tokens[i, :data.train.lengths[i]])
               for i in range(len(first))]
    assert np.mean(changed) > 0.5
    again, _ = respelled(smiles, data.train, data.vocab, seed=0, epoch=0)
    later, _ = respelled(smiles, data.train, data.vocab, seed=0, epoch=1)
    assert np.array_equal(again.tokens, first.tokens)
    assert not np.array_equal(later.tokens[:, :5], first.tokens[:, :5])


def test_a_molecule_that_cannot_be_respelled_keeps_its_prepared_tokens(
        prepared_dir: Path) -> None:
    data = load_prepared(prepared_dir)
    canonical = TokenDataset(data.train.tokens[:2], data.train.lengths[:2])
    spelled, kept = respelled(["not a molecule", "C1CC"], canonical, data.vocab, seed=0,
                              epoch=0)
    assert kept == 2
    assert np.array_equal(spelled.tokens, canonical.tokens[:, :spelled.tokens.shape[1]])


def test_an_epochs_spellings_are_kept_for_a_resume_and_only_for_that_epoch(
        prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_prepared(prepared_dir, train_smiles=True)
    first = epoch_spellings(tmp_path, data, seed=0, epoch=0)

    def refuse(*_: object) -> None:
        raise AssertionError("spelled again")

    monkeypatch.setattr(respell, "respelled", refuse)
    again = epoch_spellings(tmp_path, data, seed=0, epoch=0)
    assert np.array_equal(again.tokens, first.tokens)
    assert np.array_equal(again.lengths, first.lengths)
    with pytest.raises(AssertionError, match="spelled again"):
        epoch_spellings(tmp_path, data, seed=0, epoch=1)
    data.vocab = Vocab([*data.vocab.tokens, "[Xe]"], data.vocab.max_length)
    with pytest.raises(AssertionError, match="spelled again"):  # ids of another vocabulary
        epoch_spellings(tmp_path, data, seed=0, epoch=0)
    data.vocab, data.train_smiles = load_prepared(prepared_dir).vocab, data.train_smiles[::-1]
    with pytest.raises(AssertionError, match="spelled again"):  # rows of other molecules
        epoch_spellings(tmp_path, data, seed=0, epoch=0)


def train(data: Path, out: Path, **options: object) -> TrainResult:
    return train_model(from_dict(TrainConfig, {
        "preset": "tiny", "epochs": 2, "batch_size": 8, "eval_samples": 4, "eval_molecules": 4,
        "log_model": False, "device": "cpu", "randomize_smiles": True, "data": str(data),
        "out": str(out), **options}))


def test_a_respelling_run_stopped_mid_epoch_resumes_to_the_uninterrupted_weights(
        prepared_dir: Path, tmp_path: Path) -> None:
    whole = train(prepared_dir, tmp_path / "whole")
    cut = train(prepared_dir, tmp_path / "cut", max_steps=13)  # epoch 2 of 10 steps each
    assert not cut.progress.finished
    assert (tmp_path / "cut" / "spellings.npz").is_file()
    resumed = train(prepared_dir, tmp_path / "cut", resume=True)
    assert resumed.progress.step == whole.progress.step
    a, b = load_model(tmp_path / "whole", "cpu"), load_model(tmp_path / "cut", "cpu")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    train(prepared_dir, tmp_path / "plain", randomize_smiles=False)
    c = load_model(tmp_path / "plain", "cpu")
    assert any(not torch.equal(value, c.state_dict()[key])
               for key, value in a.state_dict().items() if value.is_floating_point())
