"""benchmarks/moses.py plans each step against its deadline: under a fake clock, with fake
stages, no training is run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks import moses
from molvae.config import from_dict
from molvae.pipeline import DONE, PlannedStage
from molvae.training.checkpoint import save_checkpoint
from molvae.training.config import TrainConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def finished_task(name: str, seconds: float, clock: FakeClock, ran: list[str],
                  resumable: bool = False) -> moses.Task:
    def run(left: float) -> bool:
        ran.append(f"{name} with {left:.0f} s left")
        clock.now += min(seconds, left)
        return seconds <= left

    return moses.Task(name, seconds, run, resumable)


def test_a_step_starts_only_what_fits(capsys: pytest.CaptureFixture[str]) -> None:
    clock, ran = FakeClock(), []
    tasks = [finished_task("prep", 100, clock, ran), finished_task("sample", 200, clock, ran)]
    assert not moses.run_step(tasks, clock, clock.now + 250, 540)
    assert ran == ["prep with 250 s left"]
    assert "sample: needs ~3.3 min, 2.5 left in this step; rerun" in capsys.readouterr().out
    assert moses.run_step(tasks[1:], clock, clock.now + 540, 540)


def test_a_stage_longer_than_any_step_is_not_started(capsys: pytest.CaptureFixture[str]) -> None:
    clock, ran = FakeClock(), []
    assert not moses.run_step([finished_task("prep", 700, clock, ran)], clock, clock.now + 540,
                              540)
    assert ran == []
    assert "more than a whole step (9.0 min)" in capsys.readouterr().out
    assert moses.run_step([finished_task("prep", 700, clock, ran)], clock, clock.now + 900, 900)


def test_a_resumable_stage_starts_with_less_than_it_needs_to_finish() -> None:
    clock, ran = FakeClock(), []
    train = finished_task("train", 225, clock, ran, resumable=True)
    assert moses.run_step([train], clock, clock.now + 300, 540)
    assert ran == ["train with 300 s left"]


def stage(name: str, folder: Path, config: object = None) -> PlannedStage:
    folder.mkdir(parents=True, exist_ok=True)
    return PlannedStage(name, config, folder, "digest")


def test_a_stopped_stage_is_planned_with_how_long_it_ran(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """Score estimated at 5 min but stopped at the deadline of a 9-minute step: the next step
    knows it needs more than a step and does not start it again."""
    clock, calls = FakeClock(), []
    score = stage("score", tmp_path / "score")

    def stopped(command: list[str], seconds: float) -> bool:
        calls.append(seconds)
        clock.now += seconds
        return False

    timings = moses.Timings(tmp_path / "timings.json")
    task = moses.stage_task(score, 300, ["score"], timings, clock, stopped)
    assert not moses.run_step([task], clock, clock.now + 540, 540)
    assert calls == [540]
    again = moses.stage_task(score, 300, ["score"], moses.Timings(tmp_path / "timings.json"),
                             clock, stopped)
    assert again.seconds == pytest.approx(594)
    assert not moses.run_step([again], clock, clock.now + 540, 540)
    assert calls == [540] and "rerun with --minutes 12" in capsys.readouterr().out

    def finishes(command: list[str], seconds: float) -> bool:
        clock.now += 580
        (score.folder / DONE).write_text("{}")
        return True

    last = moses.stage_task(score, 300, ["score"], moses.Timings(tmp_path / "timings.json"),
                            clock, finishes)
    assert moses.run_step([last], clock, clock.now + 720, 720)
    assert moses.Timings(tmp_path / "timings.json").data["score"] == {"at_least": 540,
                                                                     "seconds": 580}


def test_prep_runs_in_slices_each_going_on_where_the_last_stopped(tmp_path: Path) -> None:
    """Prep needs 12 minutes; in 5-minute steps it starts each time (it keeps its finished
    pieces when stopped) and is done in the third."""
    clock, work = FakeClock(), []
    prep = stage("prep", tmp_path / "prep")

    def pieces(command: list[str], seconds: float) -> bool:
        did = min(seconds, 720 - sum(work))
        work.append(did)
        clock.now += did
        if sum(work) >= 720:
            (prep.folder / DONE).write_text("{}")
            return True
        return False

    task = moses.resumable_task(prep, ["prep"], pieces)
    results = [moses.run_step([task], clock, clock.now + 300, 300) for _ in range(3)]
    assert results == [False, False, True] and work == [300, 300, 120]


def test_training_runs_in_slices_that_stop_before_the_deadline(tmp_path: Path) -> None:
    clock, commands = FakeClock(), []
    folder = tmp_path / "train"
    train = stage("train", folder, from_dict(TrainConfig, {"data": "prepared",
                                                           "out": str(folder)}))
    slices = iter([False, True])  # the second slice finishes training

    def runner(command: list[str], seconds: float) -> bool:
        if command == ["finish"]:
            commands.append(f"finish with {seconds:.0f} s")
            (folder / DONE).write_text("{}")
            clock.now += 30
            return True
        options = yaml.safe_load(Path(command[command.index("--config") + 1]).read_text())
        assert options["resume"] and options["out"] == str(folder)
        commands.append(f"slice of {options['max_minutes'] * 60:.0f} s with {seconds:.0f} s")
        clock.now += 60 * options["max_minutes"] + 100  # start-up took 100 s
        save_checkpoint({"progress": {"finished": next(slices)}}, folder)
        return True

    for step in range(3):
        task = moses.train_task(train, ["finish"], tmp_path,
                                moses.Timings(tmp_path / "timings.json"), clock, runner)
        assert moses.run_step([task], clock, clock.now + 540, 540) == (step == 2)
    # the first slice planned with the default start-up (120 s), the second with the measured
    # one; the 45 s left after it are too few to start the run that marks the stage done
    assert commands == ["slice of 375 s with 540 s", "slice of 395 s with 540 s",
                        "finish with 540 s"]
    assert train.done


def test_reconstruction_resumes_chunk_by_chunk(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moses, "RECONSTRUCT_CHUNK", 10)
    monkeypatch.setattr(moses, "RECONSTRUCT_START_S", 30.0)
    clock, seen = FakeClock(), []
    smiles = [f"C{'C' * i}" for i in range(25)]

    def work(chunk: list[str]) -> tuple[np.ndarray, np.ndarray]:
        seen.extend(chunk)
        clock.now += 2.0 * len(chunk)
        rows = np.array([len(s) for s in chunk], dtype=np.float32)
        return rows % 2 == 0, np.stack([rows, rows % 3], axis=1)

    timings = moses.Timings(tmp_path / "timings.json")
    folder = tmp_path / "reconstruction"
    # start-up and the first chunk (30 + 10 x 1 s, the default) fit, then the second by the
    # measured 2 s a molecule; the third (10 s) does not fit in the 5 s left
    assert moses.reconstruct_in_chunks(smiles, folder, work, timings, clock, clock.now + 45,
                                       1.0) is None
    assert seen == smiles[:20]
    totals = moses.reconstruct_in_chunks(smiles, folder, work, timings, clock, clock.now + 45,
                                         1.0)
    assert seen == smiles
    lengths = np.arange(1, 26)
    assert totals == {"reconstruction": float(np.mean(lengths % 2 == 0)), "n_reconstructed": 25,
                      "active_units": 2, "latent_dim": 2}


def test_run_child_stops_a_child_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moses, "STOP_GRACE_S", 0.5)
    python = [sys.executable, "-c"]
    assert moses.run_child([*python, "pass"], 10)
    assert not moses.run_child([*python, "import time; time.sleep(30)"], 1.5)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
               "time.sleep(30)"
    assert not moses.run_child([*python, stubborn], 1.5)  # killed after the grace
    with pytest.raises(subprocess.CalledProcessError):
        moses.run_child([*python, "raise SystemExit(3)"], 10)
