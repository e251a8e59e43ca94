"""Issue 25, item 2: a stage's output folder is written by one process, prep swaps its folder in
whole, and readers refuse a prepared folder whose files come from different prep runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from molvae import io
from molvae.cli import main
from molvae.config import from_dict
from molvae.data.batching import load_prepared
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep
from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
CSV = str(FIXTURES / "molecules.csv")
HOLD = """
import sys, time
from molvae.io import output_lock
with output_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def run_prep(out: Path, **options: object) -> Path:
    prep(from_dict(PrepConfig, {"inputs": [CSV], "out": str(out), "workers": 1, **options}))
    return out


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) with its SHA-256."""
    return {str(f.relative_to(folder)): io.file_digest(f)
            for f in sorted(folder.rglob("*")) if f.is_file()}


@pytest.fixture(scope="module")
def two_preps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two prepared folders from different inputs: all 100 fixture molecules, and the first 50."""
    root = tmp_path_factory.mktemp("two_preps")
    return run_prep(root / "a"), run_prep(root / "b", limit=50)


def copy(folder: Path, tmp_path: Path, name: str = "prepared") -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def test_a_second_stage_writing_a_folder_being_written_fails_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "prepared"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "120"],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        busy = f"{os.path.realpath(out)} is being written by another molvae process " \
               f"(pid {holder.pid})"
        assert main(["prep", CSV, "--out", str(out), "--workers", "1", "--no-track", "-q"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"molvae prep: error: {busy}"]
        assert not out.exists()
        # the lock is the stage runner's, not prep's: any stage into that folder is refused
        assert main(["score", CSV, "--reference", CSV, "--out", str(out), "--no-fcd",
                     "--workers", "1", "--no-track", "-q"]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"molvae score: error: {busy}"]
    finally:
        holder.kill()
        holder.wait()
    assert main(["prep", CSV, "--out", str(out), "--workers", "1", "--no-track", "-q"]) == 0
    assert load_prepared(out).vocab.tokens


def test_a_prep_killed_while_rewriting_out_leaves_the_old_folder_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        two_preps: tuple[Path, Path]) -> None:
    out = copy(two_preps[0], tmp_path)
    before = digests(out)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # after the new splits are written, before their vocabulary

    with monkeypatch.context() as patch:
        patch.setattr("molvae.data.partitions.build_vocab", killed)
        with pytest.raises(KeyboardInterrupt):
            run_prep(out, limit=50)
    assert digests(out) == before
    beside = [p.name for p in tmp_path.iterdir() if p.name != "prepared"]
    assert len(beside) == 1 and beside[0].startswith(".prepared.prep-")  # pieces, to resume
    assert len(load_prepared(out).train) == 80
    run_prep(out, limit=50)
    assert len(load_prepared(out).train) == 40
    assert [p.name for p in tmp_path.iterdir()] == ["prepared"]  # nothing left beside it


def test_a_kill_between_the_renames_of_the_swap_is_undone_by_the_next_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "part.txt").write_text("old")
    rename = os.rename
    calls: list[str] = []

    def killed_after_first(src: str | Path, dst: str | Path) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the old folder is away, the new one not yet in
        rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", killed_after_first)
        with pytest.raises(KeyboardInterrupt), io.atomic_folder(out) as new:
            (new / "part.txt").write_text("new")
    assert not out.exists()
    with pytest.raises(RuntimeError), io.atomic_folder(out):
        raise RuntimeError("this run fails too")
    assert (out / "part.txt").read_text() == "old"  # the old folder, whole, is back
    with io.atomic_folder(out) as new:
        (new / "part.txt").write_text("new")
    assert (out / "part.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no leftover, no lock file


def test_every_part_of_a_prepared_folder_carries_one_run_id(
        two_preps: tuple[Path, Path]) -> None:
    out = two_preps[0]
    manifest = json.loads((out / "manifest.json").read_text())
    run_id = manifest["prep_run"]
    assert json.loads((out / "vocab.json").read_text())["prep_run"] == run_id
    assert json.loads((out / "report.json").read_text())["prep_run"] == run_id
    listed = set(manifest["files"])
    on_disk = {str(f.relative_to(out)) for f in out.rglob("*") if f.is_file()} - {"manifest.json"}
    assert listed == on_disk
    assert all(manifest["files"][name]["sha256"] == io.file_digest(out / name) for name in listed)
    other = json.loads((two_preps[1] / "manifest.json").read_text())["prep_run"]
    assert other != run_id


@pytest.mark.parametrize("part", ["vocab.json", "train.parquet", "val.parquet"])
def test_training_refuses_a_folder_whose_parts_come_from_two_preps(
        part: str, tmp_path: Path, two_preps: tuple[Path, Path]) -> None:
    out = copy(two_preps[0], tmp_path)
    if (out / part).is_dir():
        shutil.rmtree(out / part)
        shutil.copytree(two_preps[1] / part, out / part)
    else:
        shutil.copy2(two_preps[1] / part, out / part)
    with pytest.raises(ValueError, match=f"{part}.* does not belong"):
        load_prepared(out)


def test_readers_refuse_a_split_with_a_partition_from_another_prep(
        tmp_path: Path, two_preps: tuple[Path, Path]) -> None:
    from molvae.stages.score import _read_molecules

    out = copy(two_preps[0], tmp_path)
    for split in ("train", "test"):
        shutil.copy2(two_preps[1] / f"{split}.parquet" / "part.0.parquet",
                     out / f"{split}.parquet" / "part.1.parquet")
    with pytest.raises(ValueError, match=r"train.parquet/part.1.parquet .*not listed"):
        load_prepared(out)
    with pytest.raises(ValueError, match=r"test.parquet/part.1.parquet .*not listed"):
        _read_molecules(str(out), "test")


def test_a_folder_from_before_manifests_loads_with_a_warning(
        tmp_path: Path, two_preps: tuple[Path, Path], caplog: pytest.LogCaptureFixture) -> None:
    out = copy(two_preps[0], tmp_path)
    (out / "manifest.json").unlink(missing_ok=True)
    vocab = json.loads((out / "vocab.json").read_text())
    vocab.pop("prep_run", None)
    (out / "vocab.json").write_text(json.dumps(vocab))
    with caplog.at_level(logging.WARNING):
        data = load_prepared(out)
    assert len(data.train) == 80
    assert [r.getMessage() for r in caplog.records if "manifest.json" in r.getMessage()]


def test_prep_never_replaces_a_folder_holding_other_files(tmp_path: Path) -> None:
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        run_prep(out)
    assert sorted(os.listdir(out)) == ["notes.txt"]


def test_a_prep_that_keeps_nothing_leaves_a_prepared_out_as_it_was(
        tmp_path: Path, two_preps: tuple[Path, Path]) -> None:
    out = copy(two_preps[0], tmp_path)
    before = digests(out)
    bad = tmp_path / "bad.csv"
    bad.write_text("smiles\nC1CC(C\n[Xe]\n")
    with pytest.raises(ValueError, match="no molecule passed") as err:
        run_prep(out, inputs=[str(bad)])
    assert digests(out) == before
    rejects = tmp_path / "prepared.rejects.csv"
    assert str(rejects) in str(err.value)
    assert len(rejects.read_text().splitlines()) == 3
