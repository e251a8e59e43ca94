"""The CPU training campaign: one long run of the recipe the study chose, trained in the
background of working sessions, resumable from a compact checkpoint kept in git.

    python benchmarks/campaign.py start --threads 1          # start or resume, in the background
    python benchmarks/campaign.py stop                       # checkpoint, stop, keep the state
    python benchmarks/campaign.py measure                    # a learning-curve point
    python benchmarks/campaign.py status
    python benchmarks/campaign.py export OUT --prior posteriors:4096   # a model to ship

``start`` rebuilds the prepared MOSES folder when it is missing (deterministic: the same
input, options and seed give the same splits and vocabulary), puts the run's checkpoint in
place from ``campaign/checkpoint.pt`` when the run folder is gone (a fresh clone), and starts
``molvae train --resume`` with the recipe below under ``nohup``. ``stop`` sends SIGTERM (the
loop writes a checkpoint and exits) and saves the compact state: float32 weights, the Adam
moments in bfloat16 (Adam reads them back at its own precision), progress, random states and
options, about half the size of the full checkpoint, so the campaign's growth of the
repository stays small. ``measure`` appends a point to ``campaign/curve.csv`` with the study's
metrics (``benchmarks/cpu_recipe.py``), and ``status`` prints where the run stands.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from cpu_recipe import RECIPES, measure, train_flags, validation_codes

from molvae.io import atomic_path, load_tensors
from molvae.model.prior import PRIOR_FITS
from molvae.model.store import model_from_state, save_model
from molvae.training.checkpoint import CHECKPOINT_FILE

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / "campaign"  # what git keeps: checkpoint.pt, curve.csv, sessions.csv
WORK = ROOT / "runs" / "campaign"  # what a session rebuilds: prepared data, the run folder
PREPARED, RUN, PID = WORK / "prepared", WORK / "model", WORK / "train.pid"
RECIPE = "beta0.2"  # chosen by the study (docs/cpu_model.md)
PREP = ["moses:train", "--properties", "heavy_atoms", "--val-fraction", "0.005",
        "--test-fraction", "0.005", "--seed", "0"]


def molvae(*args: str) -> list[str]:
    return [sys.executable, "-m", "molvae.cli", *args]


def running() -> int | None:
    """The pid of the campaign's training process, if it runs."""
    if not PID.is_file():
        return None
    pid = int(PID.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def compact(source: Path, target: Path) -> None:
    """Copy a training checkpoint with the optimizer's moments in bfloat16."""
    state = load_tensors(source, "molvae training checkpoint")
    for moments in state["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            moments[key] = moments[key].to(torch.bfloat16)
    with atomic_path(target) as tmp:
        torch.save(state, tmp)


def start(threads: int, minutes: float | None, seed_from: Path | None) -> None:
    if running():
        sys.exit(f"the campaign already runs (pid {running()})")
    WORK.mkdir(parents=True, exist_ok=True)
    if not (PREPARED / "vocab.json").is_file():
        print(f"preparing MOSES into {PREPARED} (about 20 minutes on 2 cores)", flush=True)
        subprocess.run(molvae("prep", *PREP, "--out", str(PREPARED), "--no-track", "-q"),
                       check=True)
    RUN.mkdir(parents=True, exist_ok=True)
    if seed_from is not None:  # the study's run of the chosen recipe goes on as the campaign
        shutil.copyfile(seed_from / CHECKPOINT_FILE, RUN / CHECKPOINT_FILE)
    elif not (RUN / CHECKPOINT_FILE).is_file() and (STATE / CHECKPOINT_FILE).is_file():
        shutil.copyfile(STATE / CHECKPOINT_FILE, RUN / CHECKPOINT_FILE)
    command = molvae("train", "--data", str(PREPARED), "--out", str(RUN), "--threads",
                     str(threads), "--no-log-model", "-q",
                     *train_flags(RECIPES[RECIPE]),
                     *(["--max-minutes", str(minutes)] if minutes else []),
                     *(["--resume"] if (RUN / CHECKPOINT_FILE).is_file() else []))
    log = open(WORK / "train.log", "a")  # the child keeps it open
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                             start_new_session=True)
    PID.write_text(str(child.pid))
    record_session("start", threads)
    print(f"campaign training started (pid {child.pid}, {threads} thread(s)); log: "
          f"{WORK / 'train.log'}")


def stop() -> None:
    pid = running()
    if pid:
        os.kill(pid, signal.SIGTERM)
        while running():
            time.sleep(1)
        print(f"stopped pid {pid}")
    if (RUN / CHECKPOINT_FILE).is_file():
        STATE.mkdir(exist_ok=True)
        compact(RUN / CHECKPOINT_FILE, STATE / CHECKPOINT_FILE)
        record_session("stop", 0)
        print(f"saved {STATE / CHECKPOINT_FILE} "
              f"({(STATE / CHECKPOINT_FILE).stat().st_size / 1e6:.1f} MB)")


def progress() -> dict:
    """Step, epoch and molecules seen of the run's checkpoint (or the kept state)."""
    found = RUN / CHECKPOINT_FILE
    path = found if found.is_file() else STATE / CHECKPOINT_FILE
    if not path.is_file():
        return {}
    state = load_tensors(path, "molvae training checkpoint")
    done = state["progress"]
    return {"step": done["step"], "epoch": done["epoch"], "batch": done["batch"],
            "molecules_seen": done["step"] * state["train_config"]["batch_size"]}


def record_session(event: str, threads: int) -> None:
    """One row per start and stop in campaign/sessions.csv: the CPU-hours come from these."""
    STATE.mkdir(exist_ok=True)
    path = STATE / "sessions.csv"
    row = pd.DataFrame([{"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "event": event, "threads": threads, **progress()}])
    row.to_csv(path, mode="a", header=not path.is_file(), index=False)


def export(out: Path, prior: str) -> None:
    """A model folder (``model.pt``) from the run's checkpoint, its fitted prior refitted as
    ``prior`` says to the codes of the whole validation split, for ``data/ship_model.py``."""
    torch.set_num_threads(1)
    found = RUN / CHECKPOINT_FILE
    model = model_from_state(load_tensors(found if found.is_file() else STATE / CHECKPOINT_FILE,
                                          "molvae training checkpoint")["model"])
    _, mu, logvar, _ = validation_codes(model, PREPARED)
    model.refit_prior(mu.numpy(), logvar.numpy(), prior)
    print(f"wrote {save_model(model, out)} (prior {prior}, {progress()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    begin = sub.add_parser("start", help="start or resume the run in the background")
    begin.add_argument("--threads", type=int, default=1,
                       help="torch threads: 1 while the machine is also used, 2 when idle")
    begin.add_argument("--minutes", type=float, help="stop by itself after this many minutes")
    begin.add_argument("--seed-from", type=Path,
                       help="a study run folder of the campaign's recipe to continue")
    sub.add_parser("stop", help="checkpoint, stop and save the compact state into campaign/")
    sub.add_parser("measure", help="append a learning-curve point to campaign/curve.csv")
    sub.add_parser("status", help="where the run stands")
    shipping = sub.add_parser("export", help="a model folder from the run, prior refitted")
    shipping.add_argument("out", type=Path)
    shipping.add_argument("--prior", default="posteriors:4096",
                          help=f"the fitted prior: {', '.join(PRIOR_FITS)}")
    args = parser.parse_args()
    if args.command == "start":
        start(args.threads, args.minutes, args.seed_from)
    elif args.command == "stop":
        stop()
    elif args.command == "measure":
        torch.set_num_threads(1)
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "recipe": RECIPE,
               **measure(RUN, PREPARED)}
        path = STATE / "curve.csv"
        pd.DataFrame([row]).to_csv(path, mode="a", header=not path.is_file(), index=False)
        print(json.dumps(row, default=str))
    elif args.command == "export":
        export(args.out, args.prior)
    else:
        print(json.dumps({"running": running(), **progress()}))


if __name__ == "__main__":
    main()
