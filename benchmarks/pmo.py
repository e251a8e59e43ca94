"""The PMO benchmark (Gao et al. 2022, "Sample efficiency matters") for molvae's optimizers.

    python benchmarks/pmo.py --model moses --data PREPARED --set init_size=200 --out pmo.csv
    python benchmarks/pmo.py --model MODEL --tasks qed median1 --methods screening policy cmaes \\
        --seeds 0 1 2 --budget 10000 --out pmo.csv

The protocol, on the 20 tasks that need only RDKit (``pmo_tasks.py``; drd2, gsk3b and jnk3
need TDC's classifier files and are left out):

* each run gets a fresh budgeted oracle: a new distinct valid molecule (canonical RDKit
  SMILES) costs one call, a repeat is free, an invalid molecule costs and scores nothing, and
  no molecule is scored after ``--budget`` calls;
* the score is PMO's AUC of the top-10 mean (``pmo_auc_top10``,
  :func:`molvae.optim.auc.pmo_auc`): the top-10 mean of the molecules scored so far, taken
  every 100 calls and at the last call, integrated by the trapezoid rule from 0 (a run that
  stopped early keeps its last value up to the budget), divided by the budget, so in [0, 1];
  not the ``auc_top10`` of ``molvae optimize``, which reads the curve at every call. Also the
  top-1 and top-10 mean at the end, and the AUC at 1,000, 2,000 and 5,000 calls read from the
  same runs' first calls (``pmo_auc_top10_at_N``, for budgets above N): what a user who pays
  per call gets from a smaller budget;
* ``screening`` (random MOSES training molecules drawn with the seed, same budget) runs in the
  same invocation, so every method is reported as a ratio to it.

Methods are functions ``method(oracle, run) -> stop reason`` in :data:`METHODS`; a new one is
one more function there. molvae's methods are read from :mod:`molvae.optim.registry` (policy,
the default of ``molvae optimize``; the latent optimizers cmaes, bo, gradient, random), and
each runs through :func:`molvae.optim.optimize.optimize` with the budgeted oracle as its
objective (a Python callable), molvae's guards off; ``--set KEY=VALUE`` passes any ``molvae
optimize`` option (``init_size=200``: the policy starts from 200 training molecules of
``--data`` scored through the oracle, 2% of the budget: a search that starts from fewer random
molecules spends more of its calls on its own; docs/results.md's PMO row gives the measured
comparison with 500).

Outputs: ``--out`` CSV (one row per task, method and seed), ``OUT-curves.csv`` (every run's
top-10 mean every 100 calls) and ``OUT-curves.png`` (those curves, a panel per task and one for
the sum), a printed table (per task the AUC of each method, mean over seeds, the sums, each
sum as a ratio to screening's, wall time and oracle calls spent; at 10,000 calls also mean ±
sd beside the published methods of ``pmo_published.csv`` and the tasks below screening), and
with ``--traces DIR`` every scored molecule of every run (call, smiles, score).
``benchmarks/pmo_report.py OUT.csv [MORE.csv ...]`` prints the report again from saved runs,
joining invocations (e.g. one seed each); ``--resume`` continues a stopped invocation, running
only what its ``--out`` lacks (the 10,000-call protocol takes hours on a few cores); given the
same ``--workdir``, a molvae run stopped midway continues from its ``calls.csv``: the seeded
search proposes the same molecules again, their paid scores are read back instead of bought,
and the run's trace is the uninterrupted one (its wall time is the resumed invocation's).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing.connection
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy; --threads sets torch's
os.environ.setdefault("TQDM_DISABLE", "1")  # molvae's progress bars

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pmo_report import (
    CURVE_COLUMNS,
    SCREENING,
    curves_path,
    figure_path,
    read_runs,
    report,
    top10_curve,
)
from pmo_tasks import TASKS, make_task

from molvae.config import from_dict
from molvae.data.sources import read_moses
from molvae.model.store import load_model
from molvae.optim.auc import pmo_auc, top_k_mean
from molvae.optim.objective_spec import parse_objective
from molvae.optim.objectives import CallableObjective
from molvae.optim.optimize import optimize
from molvae.optim.oracle import paid_scores
from molvae.optim.registry import METHODS as MOLVAE_METHODS
from molvae.optim.settings import Settings
from molvae.tracking import local_model_dir

CHECKPOINTS = (1000, 2000, 5000)  # smaller budgets also reported, read from each run's start


class RunObjective(CallableObjective):
    """A run's budgeted oracle as molvae's objective. Its scores belong to that run alone (its
    budget is spent in it): its fingerprint names the run, so molvae reuses only the calls.csv
    that the same run left in the same folder when it was stopped."""

    def __init__(self, oracle: BudgetedOracle, name: str, run_id: str) -> None:
        super().__init__(oracle, name)
        self.run_id = run_id

    @property
    def fingerprint(self) -> str | None:
        return self.run_id


# --- the budgeted oracle ----------------------------------------------------------------------

class BudgetExhausted(RuntimeError):
    """A new molecule was offered after the budget was spent."""


def canonical(smiles: str | None) -> str | None:
    """RDKit canonical SMILES, or None when ``smiles`` is not a molecule."""
    from rdkit import Chem

    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    return Chem.MolToSmiles(mol) if mol is not None else None


class BudgetedOracle:
    """PMO's oracle: one call per new distinct valid molecule, at most ``budget`` calls.

    Args:
        score: the task, SMILES -> float.
        budget: the most calls.
    """

    def __init__(self, score: Callable[[str], float], budget: int) -> None:
        if budget < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
        self.score, self.budget = score, budget
        self.cache: dict[str, float] = {}   # canonical SMILES -> score
        self.log: list[tuple[int, str, float]] = []  # (call, canonical SMILES, score)
        self._spellings: dict[str, str | None] = {}

    @property
    def calls(self) -> int:
        return len(self.log)

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    def key(self, smiles: str | None) -> str | None:
        if not smiles:
            return None
        if smiles in self.cache:
            return smiles
        if smiles not in self._spellings:
            self._spellings[smiles] = canonical(smiles)
        return self._spellings[smiles]

    def __call__(self, smiles: str | None) -> float:
        """The molecule's score: cached for a repeat, NaN (no call) for an invalid one.

        Raises:
            BudgetExhausted: a new molecule after the budget is spent.
        """
        key = self.key(smiles)
        if key is None:
            return math.nan
        if key in self.cache:
            return self.cache[key]
        if self.exhausted:
            raise BudgetExhausted(f"the budget of {self.budget} calls is spent")
        value = float(self.score(key))
        self.cache[key] = value
        self.log.append((self.calls + 1, key, value))
        return value

    def replay(self, calls_csv: Path) -> None:
        """Take back the calls a stopped run paid for, in call order, from the calls.csv that
        molvae's oracle wrote: the resumed search proposes the same molecules (same seed) and
        molvae answers them from that file, so this oracle must count them as already spent.
        Rows without a finite score never reached this oracle and are left out, as molvae
        leaves them out (:func:`~molvae.optim.oracle.paid_scores`)."""
        if not calls_csv.is_file():
            return
        calls = pd.read_csv(calls_csv, dtype=str, keep_default_na=False, on_bad_lines="skip")
        for smiles, value in paid_scores(calls).items():
            if smiles not in self.cache and not self.exhausted:
                self.cache[smiles] = value
                self.log.append((self.calls + 1, smiles, value))

    def scores(self) -> np.ndarray:
        """Scores in call order."""
        return np.array([value for _, _, value in self.log], dtype=float)


# --- methods -----------------------------------------------------------------------------------

@dataclass
class Run:
    """What a method gets besides the oracle."""

    task: str
    seed: int
    budget: int
    model: str | None
    data: str | None
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)


_MOSES: list[str] | None = None


def moses_train() -> list[str]:
    """The MOSES training SMILES (read once per process)."""
    global _MOSES
    if _MOSES is None:
        _MOSES = read_moses("train")["smiles"].tolist()
    return _MOSES


def screening(oracle: BudgetedOracle, run: Run) -> str:
    """Random MOSES training molecules, in an order drawn with the seed, until the budget."""
    pool = moses_train()
    order = np.random.default_rng(run.seed).permutation(len(pool))
    for index in order:
        if oracle.exhausted:
            return "budget"
        oracle(pool[index])
    return "pool exhausted"


screening.setup = lambda run: moses_train()  # type: ignore[attr-defined]


_WARMED: set[tuple[Any, ...]] = set()


def molvae_method(method: str) -> Callable[[BudgetedOracle, Run], str]:
    """A molvae method (``molvae optimize --method METHOD``) as a PMO method."""

    def settings(run: Run, **overrides: Any) -> Settings:
        if run.model is None:
            raise SystemExit(f"method '{method}' needs --model")
        return from_dict(Settings, {
            "method": method, "budget": run.budget, "data": run.data, "seed": run.seed,
            "pains": False, "radicals": False, "max_ring_size": None, "max_sa": None,
            "max_heavy_atoms": 1_000_000, "max_tokens": 1_000_000, "grid_size": 0,
            "allow_degenerate": True, "cache_dir": run.workdir / "latent-cache",
            **run.options.get("molvae", {}), **overrides}, where="--set")

    def model(run: Run) -> Any:
        return load_model(local_model_dir(run.model), run.options.get("device", "cpu"))

    def setup(run: Run) -> None:
        """Encode the training set into the shared latent cache once, outside the timing."""
        key = (run.model, run.data, str(run.workdir))
        if run.data and key not in _WARMED:
            optimize(model(run), parse_objective("qed"), settings(run, method="random", budget=1),
                     run.workdir / "warm-up")
            _WARMED.add(key)

    def run_method(oracle: BudgetedOracle, run: Run) -> str:
        folder = run.workdir / f"{run.task}-{method}-{run.seed}"
        oracle.replay(folder / "calls.csv")
        run_id = f"pmo {run.task} {method} seed {run.seed} budget {run.budget}"
        outcome = optimize(model(run), RunObjective(oracle, f"pmo:{run.task}", run_id),
                           settings(run), folder)
        return str(outcome.metrics.get("stop_reason", ""))

    run_method.__name__ = method
    run_method.setup = setup  # type: ignore[attr-defined]
    return run_method


METHODS: dict[str, Callable[[BudgetedOracle, Run], str]] = {
    SCREENING: screening, **{name: molvae_method(name) for name in MOLVAE_METHODS}}


# --- running -----------------------------------------------------------------------------------

def run_one(task: str, method: str, seed: int, budget: int, model: str | None,
            data: str | None, workdir: str, traces: str | None,
            options: dict[str, Any]) -> dict[str, Any]:
    """One (task, method, seed): a fresh oracle, the method, the PMO numbers."""
    oracle = BudgetedOracle(make_task(task), budget)
    run = Run(task, seed, budget, model, data, Path(workdir), options)
    setup = getattr(METHODS[method], "setup", None)
    if setup is not None:  # one-off loading (e.g. the screening pool) is not the method's time
        setup(run)
    started = time.perf_counter()
    stop = METHODS[method](oracle, run)
    seconds = time.perf_counter() - started
    scores = oracle.scores()
    if oracle.calls > budget:  # cannot happen; the protocol's one hard rule
        raise AssertionError(f"{task}/{method}/{seed}: {oracle.calls} calls > budget {budget}")
    if traces:
        Path(traces).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(oracle.log, columns=["call", "smiles", "score"]).to_csv(
            Path(traces) / f"{task}-{method}-{seed}.csv.gz", index=False)
    return {"task": task, "method": method, "seed": seed, "budget": budget,
            "pmo_auc_top10": pmo_auc(scores, budget), "pmo_auc_top1": pmo_auc(scores, budget, k=1),
            **{f"pmo_auc_top10_at_{calls}": pmo_auc(scores[:calls], calls)
               for calls in checkpoints(budget)},
            "top1": float(scores.max()) if len(scores) else 0.0,
            "top10_mean": top_k_mean(scores), "calls": oracle.calls, "stop": stop,
            "wall_seconds": seconds, "curve": top10_curve(scores, budget)}


def checkpoints(budget: int) -> list[int]:
    """The smaller budgets read from the same run's first calls (PMO AUC at 1k, 2k, 5k)."""
    return [calls for calls in CHECKPOINTS if calls < budget]


def _worker_init(threads: int) -> None:
    _set_threads(threads)
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    """End this worker once the invocation that started it is gone.

    Why: a killed invocation (SIGTERM, SIGKILL) cannot shut its pool down, and its workers
    would run their remaining jobs on for minutes, taking the CPU from the next invocation.
    """
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="tasks: " + " ".join(TASKS) + "\nmethods: " + " ".join(METHODS))
    parser.add_argument("--model", help="trained molvae model folder (molvae methods)")
    parser.add_argument("--data", help="its prepared data folder (warm start of molvae methods)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), metavar="TASK",
                        help="tasks (default: all 20)")
    parser.add_argument("--methods", nargs="+", default=[SCREENING, "policy"], metavar="METHOD",
                        help=f"methods (default: screening policy; {SCREENING} always runs)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(default: 0 1 2)")
    parser.add_argument("--budget", type=int, default=10_000,
                        help="oracle calls per run (default: 10000)")
    parser.add_argument("--out", type=Path, default=Path("pmo.csv"),
                        help="results CSV, one row per task, method and seed (default: pmo.csv)")
    parser.add_argument("--traces", type=Path, help="folder for every run's (call, smiles, score)")
    parser.add_argument("--workdir", type=Path,
                        help="molvae outputs and latent cache (default: a temporary folder)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out (same budget and --set) and run "
                        "only the others: a long invocation can be stopped and continued; with "
                        "the same --workdir, a molvae run stopped midway continues from its "
                        "calls.csv (the calls it paid for are replayed, not paid again)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a molvae optimize option for the molvae methods, e.g. "
                        "batch_size=128 (repeatable)")
    args = parser.parse_args(argv)
    for name in args.tasks:
        if name not in TASKS:
            parser.error(f"unknown task '{name}' (known: {', '.join(TASKS)})")
    methods = [m for part in args.methods for m in part.split(",") if m]
    for name in methods:
        if name not in METHODS:
            parser.error(f"unknown method '{name}' (known: {', '.join(METHODS)})")
    args.methods = [SCREENING] + [m for m in dict.fromkeys(methods) if m != SCREENING]
    if args.budget < 1:
        parser.error("--budget must be at least 1")
    if any(m != SCREENING for m in args.methods) and not args.model:
        parser.error("the molvae methods need --model")
    return args


def _molvae_options(pairs: Sequence[str]) -> dict[str, Any]:
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set wants KEY=VALUE, got '{pair}'")
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def options_text(args: argparse.Namespace) -> str:
    """The ``--set`` options as a run's row records them (and ``--resume`` matches them)."""
    return " ".join(args.set)


def resumed(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The runs an earlier invocation left in ``--out`` (and their curves), for ``--resume``;
    refused when they were run with another budget or other ``--set`` options."""
    if not args.out.exists():
        return [], []
    results, curves = read_runs([args.out])
    options = options_text(args)
    given = results.get("options", pd.Series("", index=results.index))  # none before --resume
    other = results[(results["budget"] != args.budget) |
                    (given != options)]
    if len(other):
        row = other.iloc[0]
        raise SystemExit(f"--resume: {args.out} holds runs at budget {row['budget']} with "
                         f"--set '{given[other.index[0]]}', not budget {args.budget} with --set "
                         f"'{options}'; give another --out")
    kept = curves[CURVE_COLUMNS].itertuples(index=False, name=None) if curves is not None else []
    return results.to_dict("records"), list(kept)


def main(argv: Sequence[str] | None = None) -> pd.DataFrame:
    args = parse_args(argv)
    _set_threads(args.threads)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pmo-"))
    options = {"molvae": _molvae_options(args.set)}
    jobs = [(task, method, seed) for task in args.tasks for seed in args.seeds
            for method in args.methods]
    common = (args.budget, args.model, args.data, str(workdir),
              str(args.traces) if args.traces else None, options)
    rows, curves = resumed(args) if args.resume else ([], [])
    finished = {(row["task"], row["method"], row["seed"]) for row in rows}
    todo = [job for job in jobs if job not in finished]
    total, started = len(rows) + len(todo), time.perf_counter()

    def done(row: dict[str, Any]) -> None:
        curves.extend((row["task"], row["method"], row["seed"], row["budget"], calls, top10)
                      for calls, top10 in row.pop("curve"))
        rows.append({**row, "options": options_text(args)})
        print(f"[{len(rows)}/{total} {time.perf_counter() - started:6.0f} s] {row['task']} "
              f"{row['method']} seed {row['seed']}: PMO AUC top-10 {row['pmo_auc_top10']:.3f}, "
              f"top-1 {row['top1']:.3f}, {row['calls']} calls, {row['wall_seconds']:.0f} s "
              f"({row['stop']})", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False)  # partial results survive a kill
        pd.DataFrame(curves, columns=CURVE_COLUMNS).to_csv(curves_path(args.out), index=False)

    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_worker_init,
                                 initargs=(args.threads,)) as pool:
            for future in as_completed([pool.submit(run_one, *job, *common) for job in todo]):
                done(future.result())  # as each finishes, so a kill loses only running ones
    else:
        for job in todo:
            done(run_one(*job, *common))
    results = pd.DataFrame(rows)
    print("\n" + report(results, pd.DataFrame(curves, columns=CURVE_COLUMNS), args.methods,
                        figure_path(args.out)))
    print(f"total wall time {time.perf_counter() - started:.0f} s; results: {args.out}")
    return results


if __name__ == "__main__":
    main()
