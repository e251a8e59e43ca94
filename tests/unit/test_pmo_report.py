"""benchmarks/pmo_report.py and pmo.py: the curves integrate to PMO's AUC, the published
comparison reads mean ± sd over seeds, runs joined from several CSVs count once, and a stopped
invocation resumes (finished runs kept, a run stopped midway continued from its calls.csv)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.pmo_report import beside_published, curves_path, plot_curves, read_runs, top10_curve
from molvae.optim.auc import pmo_auc


def test_top10_curve_integrates_to_the_pmo_auc_and_stays_flat_after_an_early_stop() -> None:
    scores = np.random.default_rng(0).random(450)
    curve = top10_curve(scores, budget=1000)
    calls = np.array([0] + [c for c, _ in curve])
    values = np.array([0.0] + [v for _, v in curve])
    area = float(np.sum(np.diff(calls) * (values[1:] + values[:-1]) / 2)) / 1000
    # pmo_auc also reads the last call (450); the 100-call grid differs by one trapezoid
    assert abs(area - pmo_auc(scores, 1000)) < 0.01
    assert [v for c, v in curve if c >= 500] == [np.sort(scores)[-10:].mean()] * 6


def _rows(budget: int) -> pd.DataFrame:
    rows = []
    for seed, (qed, median1) in enumerate([(0.95, 0.30), (0.93, 0.36)]):
        rows += [{"task": "qed", "method": "policy", "seed": seed, "budget": budget,
                  "pmo_auc_top10": qed},
                 {"task": "median1", "method": "policy", "seed": seed, "budget": budget,
                  "pmo_auc_top10": median1},
                 {"task": "qed", "method": "screening", "seed": seed, "budget": budget,
                  "pmo_auc_top10": 0.945},
                 {"task": "median1", "method": "screening", "seed": seed, "budget": budget,
                  "pmo_auc_top10": 0.2}]
    return pd.DataFrame(rows)


def test_the_published_comparison_gives_mean_and_sd_and_names_tasks_below_screening() -> None:
    text = beside_published(_rows(10_000), ["screening", "policy"])
    assert "0.940 ± 0.014" in text and "0.330 ± 0.042" in text
    assert "1.270 " in text  # policy's sum, 0.940 + 0.330
    assert "0.379" in text  # Genetic GFN's median1, beside ours
    assert "tasks below screening: qed" in text
    assert "policy 1.250 / 1.290 (sd 0.028)" in text  # the sum of each seed


def test_a_task_one_method_has_not_finished_is_left_out_of_the_sums() -> None:
    rows = _rows(10_000)
    rows = rows[~((rows["task"] == "median1") & (rows["method"] == "policy"))]
    text = beside_published(rows, ["screening", "policy"])
    assert "median1" not in text and "0.945 " in text  # screening's sum is qed alone
    rows = _rows(10_000)
    rows = rows[~((rows["task"] == "median1") & (rows["method"] == "policy") & (rows["seed"] == 1))]
    text = beside_published(rows, ["screening", "policy"])
    assert "0.300 " in text and "policy 1.250\n" in text  # seed 1 has no sum of its own


def test_no_published_comparison_at_another_budget() -> None:
    assert beside_published(_rows(1_000), ["screening", "policy"]) == ""


def test_runs_joined_from_two_files_count_once_and_draw(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    rows = _rows(10_000)
    rows[rows["seed"] == 0].to_csv(first, index=False)
    rows.to_csv(second, index=False)  # seed 0 again, as a second invocation's screening
    for path in (first, second):
        pd.DataFrame([{"task": "qed", "method": "policy", "seed": 0, "budget": 10_000,
                       "calls": c, "top10": c / 1000} for c in (100, 200)]
                     ).to_csv(curves_path(path), index=False)
    results, curves = read_runs([first, second])
    assert len(results) == len(rows)
    assert curves is not None and len(curves) == 2
    figure = plot_curves(curves, tmp_path / "curves.png")
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_resume_keeps_finished_runs_and_refuses_other_settings(tmp_path: Path) -> None:
    from benchmarks.pmo import parse_args, resumed

    out = tmp_path / "pmo.csv"
    rows = _rows(10_000).assign(options="policy_screen=8")
    rows.to_csv(out, index=False)
    pd.DataFrame([{"task": "qed", "method": "policy", "seed": 0, "budget": 10_000,
                   "calls": 100, "top10": 0.9}]).to_csv(curves_path(out), index=False)
    args = parse_args(["--tasks", "qed", "median1", "--methods", "screening", "--budget",
                       "10000", "--out", str(out), "--resume", "--set", "policy_screen=8"])
    kept, curves = resumed(args)
    assert len(kept) == len(rows) and curves == [("qed", "policy", 0, 10_000, 100, 0.9)]
    for other in (["--budget", "2000", "--set", "policy_screen=8"], ["--budget", "10000"]):
        args = parse_args(["--methods", "screening", "--out", str(out), "--resume", *other])
        with pytest.raises(SystemExit, match="--resume: .* holds runs at budget 10000"):
            resumed(args)


def test_resume_without_set_matches_runs_without_options(tmp_path: Path) -> None:
    from benchmarks.pmo import parse_args, resumed

    out = tmp_path / "pmo.csv"
    _rows(10_000).assign(options="").to_csv(out, index=False)  # reads back as NaN
    args = parse_args(["--methods", "screening", "--out", str(out), "--resume"])
    kept, _ = resumed(args)
    assert len(kept) == len(_rows(10_000))
    with pytest.raises(SystemExit, match="--resume"):
        resumed(parse_args(["--methods", "screening", "--out", str(out), "--resume",
                            "--set", "policy_screen=8"]))


def test_a_molvae_run_stopped_midway_continues_from_its_calls_csv(tiny_model: Path,
                                                                    tmp_path: Path) -> None:
    from benchmarks.pmo import BudgetedOracle, Run, molvae_method

    paid: list[str] = []

    def score(smiles: str) -> float:
        paid.append(smiles)
        return len(smiles) / 100

    run = Run("qed", 0, 40, str(tiny_model), None, tmp_path)
    whole = BudgetedOracle(score, 40)
    molvae_method("random")(whole, run)
    calls = tmp_path / "qed-random-0" / "calls.csv"
    pd.read_csv(calls).head(15).to_csv(calls, index=False)  # as if stopped after 15 calls
    paid.clear()
    resumed = BudgetedOracle(score, 40)
    molvae_method("random")(resumed, run)
    assert resumed.log == whole.log and len(whole.log) == 40 and len(paid) == 25
