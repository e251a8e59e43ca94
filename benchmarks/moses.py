"""The MOSES protocol end to end, in steps that resume: prep → train → sample → score, then
whole-molecule reconstruction and active units, printed as a row of the MOSES README table.

    python benchmarks/moses.py --minutes 9                    # one ≤10-minute step; rerun it
    python benchmarks/moses.py --max-train 20000 --preset small --reference prepared --no-fcd \
        --set sample.n=2000 --reconstruct 2000      # a quick look on a CPU
    python benchmarks/moses.py --model moses --reconstruct 10000 --workdir runs/moses-shipped
                                                    # the row of a trained (or shipped) model

The recipe is ``pipelines/moses.yaml`` (prep of the MOSES train set, the ``default`` model,
30,000 samples from the fitted prior, scoring against the MOSES test and scaffold-test sets
with novelty against the MOSES train set). Pass the same options to every invocation: they are
part of the stages' cache keys.

A step (one invocation) runs against its deadline and starts only what fits in the time left,
by the durations earlier steps measured (``WORKDIR/timings.json``) or, before any, by
conservative per-core rates (docs/results.md has the measurements behind them):

- prep resumes with the pieces it finished: it starts when its start-up and some pieces fit,
  in a child process stopped (SIGTERM) at the deadline, and the next step goes on.
- sample and score cannot resume inside: each starts only when its estimate fits, and runs in
  a child process stopped at the deadline; a stopped one records how long it ran at least, so
  the next step plans with that. One that needs more than a whole step says so, with the
  ``--minutes`` it needs.
- train resumes from its checkpoint: it starts when its start-up and some training fit, and
  stops itself (``max_minutes``, then SIGTERM) with a checkpoint before the deadline.
- reconstruction runs in chunks kept in ``WORKDIR/reconstruction-*``; a chunk starts only
  when it fits by the measured time per molecule.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from molvae import chem
from molvae.api import load
from molvae.config import to_dict
from molvae.data.sources import read_moses
from molvae.io import atomic_path, write_json
from molvae.model.loss import active_units
from molvae.pipeline import Pipeline, PlannedStage, load_pipeline
from molvae.training.checkpoint import load_checkpoint

RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "moses.yaml"
COLUMNS = ("valid", "unique@1000", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test",
           "SNN/TestSF", "Frag/Test", "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv",
           "IntDiv2", "Filters", "Novelty")
# the published rows the issue quotes (MOSES README); other cells are not quoted here
PUBLISHED = {
    "VAE (MOSES)": {"valid": 0.977, "FCD/Test": 0.099, "SNN/Test": 0.626, "Frag/Test": 0.999,
                    "Scaf/Test": 0.939, "IntDiv": 0.856, "Novelty": 0.695},
    "CharRNN (MOSES)": {"FCD/Test": 0.073, "Novelty": 0.842},
    "JTN-VAE (MOSES)": {"valid": 1.0, "FCD/Test": 0.395, "Novelty": 0.914},
}
STAGES = ("prep", "train", "sample", "score")
TARGETS = {"valid": 1.0, "FCD/Test": 0.07, "Novelty": 0.90, "SNN/Test": 0.60}

# Estimates before a step has measured anything: per CPU core, below the rates measured on
# 2 cores (docs/results.md), so a first attempt is not started where it cannot finish.
SAMPLE_PER_CORE = 150.0  # molecules/s, default preset
SCORE_PER_CORE = 50.0  # molecules/s against the MOSES test sets
FCD_REFERENCE_CPU_S = 900.0  # CPU seconds for the MOSES reference statistics (once)
RECONSTRUCT_PER_CORE = 100.0  # molecules/s, default preset
CHILD_START_S = 20.0  # a child process's imports and stage set-up
TRAIN_START_S = 120.0  # a training child's start-up (data, model, checkpoint) until measured
TRAIN_LEAST_S = 60.0  # training worth starting a child for
PREP_LEAST_S = 60.0  # standardizing worth starting a child for
STOP_GRACE_S = 45.0  # between asking a child to stop and killing it
RECONSTRUCT_CHUNK = 2000  # molecules per saved reconstruction chunk
RECONSTRUCT_START_S = 30.0  # loading the model and the MOSES test set

Clock = Callable[[], float]


class Timings:
    """What earlier steps measured, in ``WORKDIR/timings.json``, so later steps plan with it:
    per stage ``seconds`` (it finished in), ``at_least`` (it was stopped after), and the
    training start-up and reconstruction time per molecule."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, float]] = \
            json.loads(path.read_text()) if path.is_file() else {}

    def get(self, stage: str, key: str) -> float | None:
        return self.data.get(stage, {}).get(key)

    def record(self, stage: str, **values: float) -> None:
        self.data.setdefault(stage, {}).update(values)
        write_json(self.data, self.path)


@dataclass
class Task:
    """One stage as a step plans it.

    Attributes:
        name: the stage.
        seconds: what it needs to finish; for a resumable task, to make progress worth starting.
        run: runs it with the seconds left in the step; True when the stage is done.
        resumable: a stopped run keeps its progress (training, reconstruction chunks).
    """

    name: str
    seconds: float
    run: Callable[[float], bool]
    resumable: bool = False


def run_step(tasks: Sequence[Task], clock: Clock, deadline: float, step_s: float) -> bool:
    """Run the tasks in order while each fits before ``deadline``; True when all are done.

    A task that does not fit in the time left waits for the next step; one that needs more
    than a whole step (``step_s``) and cannot resume would never fit, which is said with what
    ``--minutes`` would do."""
    for task in tasks:
        left = deadline - clock()
        if task.seconds > step_s and not task.resumable:
            print(f"{task.name}: needs ~{task.seconds / 60:.1f} min, more than a whole step "
                  f"({step_s / 60:.1f} min), and it restarts when stopped; rerun with "
                  f"--minutes {int(task.seconds / 60 * 1.2) + 1}")
            return False
        if task.seconds > left:
            print(f"{task.name}: needs ~{task.seconds / 60:.1f} min, {max(left, 0) / 60:.1f} "
                  "left in this step; rerun to continue")
            return False
        if not task.run(left):
            print(f"{task.name}: not finished in this step; rerun to continue")
            return False
    return True


Runner = Callable[[list[str], float], bool]


def run_child(command: list[str], seconds: float) -> bool:
    """Run ``command`` for at most ``seconds``: then SIGTERM (training stops at its next step
    with a checkpoint), and SIGKILL after a grace period. True when it exited by itself."""
    child = subprocess.Popen(command)
    try:
        child.wait(timeout=max(seconds - STOP_GRACE_S, 1.0))
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return False
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, command)
    return True


def stage_task(stage: PlannedStage, estimate: float, command: list[str], timings: Timings,
               clock: Clock = time.monotonic, runner: Runner = run_child) -> Task:
    """A stage that cannot resume inside, run by ``command`` in a child stopped at the
    deadline; its estimate is raised to what a stopped run showed it needs at least."""
    at_least = timings.get(stage.name, "at_least") or 0.0

    def run(left: float) -> bool:
        started = clock()
        if runner(command, left):
            timings.record(stage.name, seconds=clock() - started)
            return stage.done
        timings.record(stage.name, at_least=max(at_least, clock() - started))
        return False

    return Task(stage.name, max(estimate, at_least * 1.1), run)


def resumable_task(stage: PlannedStage, command: list[str], runner: Runner = run_child
                   ) -> Task:
    """A stage that keeps its progress when stopped (prep keeps the pieces it finished): it
    starts when its start-up and some work fit, runs in a child stopped at the deadline, and
    the next step's child goes on from there."""
    return Task(stage.name, CHILD_START_S + PREP_LEAST_S + STOP_GRACE_S,
                lambda left: runner(command, left) and stage.done, resumable=True)


def train_task(stage: PlannedStage, finish: list[str], workdir: Path, timings: Timings,
               clock: Clock = time.monotonic, runner: Runner = run_child) -> Task:
    """Training in slices: a child ``molvae train --resume`` told to stop (``max_minutes``)
    with a checkpoint before the deadline. Once the checkpoint says finished, ``finish`` (the
    pipeline's train stage, which resumes the finished run) marks the stage done."""
    start_s = timings.get("train", "start") or TRAIN_START_S
    config = workdir / "train-slice.yaml"

    def run(left: float) -> bool:
        started = clock()
        if not _training_finished(stage):
            minutes = (left - start_s - STOP_GRACE_S) / 60
            config.write_text(yaml.safe_dump({**to_dict(stage.config), "resume": True,
                                              "max_minutes": minutes}))
            exited = runner([sys.executable, "-m", "molvae.cli", "train", "--config",
                             str(config), "--no-track", "-q"], left)
            if not _training_finished(stage):
                if exited:  # it stopped itself at max_minutes: the rest was start-up
                    timings.record("train", start=max(clock() - started - 60 * minutes, 1.0))
                return False
        left -= clock() - started
        return left >= start_s + STOP_GRACE_S and runner(finish, left) and stage.done

    return Task("train", start_s + TRAIN_LEAST_S + STOP_GRACE_S, run, resumable=True)


def _training_finished(stage: PlannedStage) -> bool:
    checkpoint = load_checkpoint(stage.folder) if stage.folder.is_dir() else None
    return bool(checkpoint and checkpoint["progress"]["finished"])


def reconstruct_in_chunks(smiles: Sequence[str], folder: Path,
                          work: Callable[[list[str]], tuple[np.ndarray, np.ndarray]],
                          timings: Timings, clock: Clock, deadline: float,
                          default_per_molecule: float) -> dict[str, float] | None:
    """Greedy reconstruction of ``smiles`` chunk by chunk, each chunk's results kept in
    ``folder``; ``work`` gives per molecule whether it came back exactly and its mu. Starts a
    chunk only when it fits by the measured time per molecule (the first one of a step also
    loads the model); returns the totals once every chunk is done, else None."""
    folder.mkdir(parents=True, exist_ok=True)
    start_s = RECONSTRUCT_START_S
    for index, start in enumerate(range(0, len(smiles), RECONSTRUCT_CHUNK)):
        path = folder / f"part-{index:05d}.npz"
        if path.is_file():
            continue
        chunk = list(smiles[start:start + RECONSTRUCT_CHUNK])
        per_molecule = timings.get("reconstruct", "per_molecule") or default_per_molecule
        if start_s + len(chunk) * per_molecule > deadline - clock():
            done = len(list(folder.glob("part-*.npz")))
            print(f"reconstruction: {done * RECONSTRUCT_CHUNK} of {len(smiles)} molecules "
                  "done; the next chunk does not fit in this step; rerun to continue")
            return None
        started = clock()
        exact, mu = work(chunk)
        timings.record("reconstruct", per_molecule=(clock() - started) / len(chunk))
        start_s = 0.0
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, exact=exact, mu=mu)
    exacts, mus = [], []
    for path in sorted(folder.glob("part-*.npz")):
        with np.load(path, allow_pickle=False) as part:
            exacts.append(part["exact"])
            mus.append(part["mu"])
    exact, mu = np.concatenate(exacts), np.concatenate(mus)
    return {"reconstruction": float(exact.mean()), "n_reconstructed": len(exact),
            "active_units": active_units(mu[np.isfinite(mu).all(axis=1)]),
            "latent_dim": int(mu.shape[1])}


def reconstruction_work(model: str, device: str) -> Callable[[list[str]],
                                                              tuple[np.ndarray, np.ndarray]]:
    """Per chunk of MOSES test SMILES: canonical SMILES decoded greedily from mu equal to the
    molecule (a molecule it cannot encode counts as not reconstructed), and mu. The model
    loads at the first chunk, so a step with no chunk to do does not pay for it."""
    loaded = []

    def work(smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not loaded:
            loaded.append(load(model, device))
        vae = loaded[0]
        canonical = [chem.canonical_smiles(s) or "" for s in smiles]
        mu, _ = vae.encode(canonical)
        ok = np.isfinite(mu).all(axis=1)
        rebuilt = iter(vae.decode(mu[ok]))
        exact = np.array([bool(good) and next(rebuilt) == s for s, good in zip(canonical, ok)])
        return exact, mu

    return work


def recipe(args: argparse.Namespace) -> tuple[Pipeline, list[str]]:
    """pipelines/moses.yaml's prep, train, sample and score with this run's overrides, its
    stage folders under ``--workdir`` (a copy of the recipe and the overrides are written
    there, for the child processes)."""
    spec = yaml.safe_load(RECIPE.read_text())
    spec["workdir"] = args.workdir
    stages = ("sample", "score") if args.model else STAGES
    spec["stages"] = {k: v for k, v in spec["stages"].items() if k in stages}
    if args.model:  # a trained model: its samples and score only
        spec["stages"]["sample"]["model"] = args.model
    if args.reference == "prepared":  # the pipeline then links score to prep's test split
        spec["stages"]["score"].pop("reference", None)
    local = Path(args.workdir) / "moses.yaml"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(yaml.safe_dump(spec, sort_keys=False))
    overrides = [f"score.fcd={'false' if args.no_fcd else 'true'}", *args.set]
    if not args.model:
        overrides += [f"train.preset={args.preset}", f"train.epochs={args.epochs}",
                      f"train.checkpoint_every={args.checkpoint_every}"]
    if args.max_train:
        overrides.append(f"prep.limit={args.max_train}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    return load_pipeline(local, overrides), overrides


def plan(pipeline: Pipeline, overrides: list[str], args: argparse.Namespace,
         timings: Timings, cores: int) -> list[Task]:
    """The stages still to do, with their estimates on ``cores`` CPU cores; each runs in a
    child process (``molvae run`` with this run's overrides, or a training slice)."""
    stages = {s.name: s for s in pipeline.stages}
    n_samples = stages["sample"].config.n
    fcd_s = FCD_REFERENCE_CPU_S / cores if not args.no_fcd and args.reference == "moses" else 0
    estimates = {
        "sample": n_samples / (SAMPLE_PER_CORE * cores),
        "score": n_samples / (SCORE_PER_CORE * cores) + fcd_s,
    }
    tasks = []
    for stage in pipeline.stages:
        if stage.done:
            continue
        command = [sys.executable, "-m", "molvae.cli", "run", str(pipeline.source), "--only",
                   stage.name, *[f"--set={o}" for o in overrides],
                   *(["--no-track"] if args.no_track else [])]
        if stage.name == "train":
            tasks.append(train_task(stage, command, Path(args.workdir), timings))
        elif stage.name == "prep":
            tasks.append(resumable_task(stage, command))
        else:
            tasks.append(stage_task(stage, CHILD_START_S + estimates[stage.name], command,
                                    timings))
    return tasks


def table(ours: dict[str, float], label: str) -> str:
    """Our row beside the published ones, in the MOSES README's columns."""
    header = f"| model | {' | '.join(COLUMNS)} |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in {**PUBLISHED, label: ours}.items():
        cells = [f"{row[c]:.3f}" if row.get(c) is not None else "—" for c in COLUMNS]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/moses-protocol")
    parser.add_argument("--minutes", type=float, default=9.0, help="stop this step after this "
                        "long (a lent GPU runs one command for at most 10 minutes)")
    parser.add_argument("--max-train", type=int, default=None, help="only the first N MOSES "
                        "training molecules (a quick look on a CPU)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--reconstruct", type=int, default=None, help="MOSES test molecules "
                        "reconstructed (default: all of them)")
    parser.add_argument("--reference", default="moses", choices=["moses", "prepared"],
                        help="score against the MOSES test sets, or (quick look) the prepared "
                        "held-out split (the MOSES reference statistics take long on a CPU)")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (its reference "
                        "statistics take ~15 CPU minutes once)")
    parser.add_argument("--model", help="score this trained model (a folder or a shipped "
                        "model's name) instead of preparing and training one")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-track", action="store_true")
    args = parser.parse_args()

    # The pipeline hashes the source of a "module:function" option, and "moses:train" reads
    # as one while this file's folder is importable: the stages would get other folders here
    # than in the child processes (started with -m, which do not see it).
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    clock = time.monotonic
    step_s = 60 * args.minutes
    deadline = clock() + step_s
    pipeline, overrides = recipe(args)
    workdir = Path(args.workdir)
    timings = Timings(workdir / "timings.json")
    cores = os.cpu_count() or 1
    if not run_step(plan(pipeline, overrides, args, timings, cores), clock, deadline, step_s):
        return
    stages = {s.name: s for s in pipeline.stages}
    model = args.model or str(stages["train"].folder)
    smiles = read_moses("test")["smiles"].tolist()
    order = np.random.default_rng(0).permutation(len(smiles))[:args.reconstruct]
    folder = workdir / f"reconstruction-{Path(model).name}-{len(order)}"
    extra = reconstruct_in_chunks([smiles[i] for i in order], folder,
                                  reconstruction_work(model, args.device), timings, clock,
                                  deadline, 1 / (RECONSTRUCT_PER_CORE * cores))
    if extra is None:
        return
    scores = json.loads((stages["score"].folder / "metrics.json").read_text())["metrics"]
    label = f"molvae {args.model}" if args.model else f"molvae {args.preset}" + (
        f" (first {args.max_train} MOSES molecules)" if args.max_train else "")
    result_file = workdir / "moses_row.json"
    result_file.write_text(json.dumps({"label": label, **scores, **extra}, indent=2))
    print(table(scores, label))
    print(f"\nreconstruction (greedy from mu, {extra['n_reconstructed']} MOSES test molecules): "
          f"{extra['reconstruction']:.3f}; active units {extra['active_units']} of "
          f"{extra['latent_dim']}")
    short = {k: (scores.get(k), v) for k, v in TARGETS.items()}
    print("targets: " + ", ".join(f"{k} {'n/a' if s is None else f'{s:.3f}'} (target {v})"
                                  for k, (s, v) in short.items()))
    print(f"written to {result_file}")


if __name__ == "__main__":
    main()
