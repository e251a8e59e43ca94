"""The token cache beside prepared splits: read only when it is the folder's own, identical to
tokenizing, and training on it gives the same numbers."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from molvae.config import from_dict
from molvae.data.batching import PreparedData, load_prepared, token_cache_path, write_token_cache
from molvae.data.manifest import write_manifest
from molvae.data.tokens import Vocab
from molvae.training.config import TrainConfig
from molvae.training.loop import train_model


def run_of(folder: Path) -> str:
    return json.loads((folder / "manifest.json").read_text())["prep_run"]


def cache(folder: Path, vocab: Vocab | None = None, run_id: str | None = None,
          manifest: bool = True) -> None:
    """Write the folder's token cache as prep does (before the manifest, under its run id)."""
    run = run_of(folder)
    write_token_cache(folder, vocab or Vocab.load(folder / "vocab.json"), run_id or run)
    if manifest:
        write_manifest(folder, run)


def copy_prepared(source: Path, out: Path, cached: bool) -> Path:
    """A copy of a prepared folder, with a token cache when ``cached``, else without one (as
    an older molvae prepared it)."""
    shutil.copytree(source, out)
    for split in ("train", "val"):
        token_cache_path(out, split).unlink(missing_ok=True)
    if cached:
        cache(out)
    else:
        write_manifest(out, run_of(out))
    return out


def assert_same(a: PreparedData, b: PreparedData) -> None:
    for split in ("train", "val"):
        x, y = getattr(a, split), getattr(b, split)
        assert x.tokens.dtype == y.tokens.dtype == np.int32
        assert np.array_equal(x.tokens, y.tokens) and np.array_equal(x.lengths, y.lengths)
        for name in ("properties", "conditions"):
            if getattr(x, name) is None or getattr(y, name) is None:
                assert getattr(x, name) is getattr(y, name) is None
            else:
                assert np.array_equal(getattr(x, name), getattr(y, name), equal_nan=True)
    assert a.val_smiles == b.val_smiles
    assert np.array_equal(a.property_mean, b.property_mean)


@pytest.fixture
def with_gaps(prepared_dir: Path, tmp_path: Path) -> Path:
    """The fixture data with some molecular weights missing (a conditional model drops those
    rows, so cached ids must follow the rows kept)."""
    out = copy_prepared(prepared_dir, tmp_path / "gaps", cached=False)
    train = pd.read_parquet(out / "train.parquet")
    train.loc[::7, "mw"] = np.nan
    shutil.rmtree(out / "train.parquet")
    train.to_parquet(out / "train.parquet", index=False)
    write_manifest(out, run_of(out))
    return out


@pytest.mark.parametrize("options", [{}, {"property_names": ["qed", "logp"], "max_train": 40,
                                          "seed": 3}])
def test_cached_ids_equal_tokenizing(prepared_dir: Path, tmp_path: Path, options: dict,
                                     caplog: pytest.LogCaptureFixture) -> None:
    cached = copy_prepared(prepared_dir, tmp_path / "cached", cached=True)
    with caplog.at_level(logging.INFO, "molvae.data.batching"):
        data = load_prepared(cached, **options)
    assert "tokenizing" not in caplog.text
    with np.load(token_cache_path(cached, "train"), allow_pickle=False) as cache:
        assert cache["tokens"].dtype == np.uint8  # the fixture's vocabulary is small
    tokenized = copy_prepared(prepared_dir, tmp_path / "tokenized", cached=False)
    assert_same(data, load_prepared(tokenized, **options))


def test_cached_ids_follow_the_rows_a_conditional_model_keeps(with_gaps: Path,
                                                               tmp_path: Path) -> None:
    cached = copy_prepared(with_gaps, tmp_path / "cached", cached=True)
    options = {"condition_names": ["mw"], "max_train": 50, "seed": 1}
    data = load_prepared(cached, **options)
    assert len(data.train) == 50
    assert_same(data, load_prepared(with_gaps, **options))


def _other_vocab(folder: Path) -> None:
    vocab = Vocab.load(folder / "vocab.json")
    cache(folder, Vocab([*vocab.tokens[:4], *reversed(vocab.tokens[4:])]))


def _other_run(folder: Path) -> None:
    cache(folder, run_id="another-run")


def _fewer_rows(folder: Path) -> None:
    cache(folder)
    path = token_cache_path(folder, "train")
    with np.load(path) as arrays:
        kept = dict(arrays)
    kept["tokens"] = kept["tokens"][:-1]
    with open(path, "wb") as handle:
        np.savez(handle, **kept)
    write_manifest(folder, run_of(folder))


def _after_the_manifest(folder: Path) -> None:
    cache(folder, manifest=False)


def _garbage(folder: Path) -> None:
    token_cache_path(folder, "train").write_bytes(b"not a zip")
    write_manifest(folder, run_of(folder))


@pytest.mark.parametrize(("spoil", "why"), [
    (_other_vocab, "it was made with another vocabulary"),
    (_other_run, "it is from prep run another-run"),
    (_fewer_rows, "it has 79 rows, the split 80"),
    (_after_the_manifest, "train.tokens.npz does not belong with the rest of this prepared "
                          "folder (it is not listed in manifest.json"),
    (_garbage, "ignoring train.tokens.npz (not a token cache: ValueError)")])
def test_a_stale_cache_is_ignored_with_a_warning(prepared_dir: Path, tmp_path: Path, spoil,
                                                 why: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = copy_prepared(prepared_dir, tmp_path / "stale", cached=False)
    spoil(folder)
    with caplog.at_level(logging.WARNING, "molvae.data.batching"):
        data = load_prepared(folder)
    warning = next(r.getMessage() for r in caplog.records if "tokenizing" in r.getMessage())
    assert why in warning and warning.endswith("tokenizing 80 molecules")
    assert_same(data, load_prepared(prepared_dir))


def test_prep_writes_the_cache_and_training_reads_it(
        prepared_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert token_cache_path(prepared_dir, "train").is_file()
    with caplog.at_level(logging.INFO, "molvae.data.batching"):
        load_prepared(prepared_dir)
    assert "tokenizing" not in caplog.text


def test_a_folder_without_a_cache_is_tokenized_with_a_log_line(
        prepared_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    older = copy_prepared(prepared_dir, tmp_path / "older", cached=False)
    with caplog.at_level(logging.INFO, "molvae.data.batching"):
        data = load_prepared(older)
    assert "no train.tokens.npz (prepared by an older molvae): tokenizing 80 molecules" \
        in caplog.text
    assert_same(data, load_prepared(prepared_dir))


def test_training_on_cached_ids_gives_the_same_losses(prepared_dir: Path,
                                                      tmp_path: Path) -> None:
    cached = copy_prepared(prepared_dir, tmp_path / "cached", cached=True)
    tokenized = copy_prepared(prepared_dir, tmp_path / "tokenized", cached=False)
    histories = []
    for data in (tokenized, cached):
        out = tmp_path / f"model-{data.name}"
        train_model(from_dict(TrainConfig, {
            "data": str(data), "out": str(out), "preset": "tiny", "epochs": 1,
            "batch_size": 16, "eval_samples": 4, "eval_molecules": 4, "log_model": False,
            "device": "cpu", "property_head": ["qed"], "seed": 5}))
        histories.append(pd.read_csv(out / "history.csv"))
    pd.testing.assert_frame_equal(*histories)
