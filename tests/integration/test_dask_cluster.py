"""Prep and scoring on a real Dask cluster: a scheduler and two worker processes started as a
user would (``dask scheduler`` / ``dask worker``) on 127.0.0.1, reached by ``--cluster``.

The cluster's results must equal the in-process ones, row for row: nothing lost, duplicates
found across pieces and inputs, the same split."""

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from molvae.cli import main
from tests.conftest import FIXTURES
from tests.integration.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The address of a running scheduler with two single-threaded worker processes."""
    from dask.distributed import Client

    address = f"tcp://127.0.0.1:{free_port()}"
    module = [sys.executable, "-m"]
    scheduler = subprocess.Popen([*module, "distributed.cli.dask_scheduler", "--host",
                                  "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], stderr=subprocess.PIPE)
    workers = subprocess.Popen([*module, "distributed.cli.dask_worker", address,
                                "--nworkers", "2", "--nthreads", "1", "--no-dashboard",
                                "--host", "127.0.0.1"], stderr=subprocess.PIPE)
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in (workers, scheduler):
            process.terminate()
            process.wait(timeout=60)


def tasks_run(address: str, prefix: str) -> int:
    """How many tasks whose name starts with ``prefix`` the scheduler has seen finish."""
    from dask.distributed import Client

    def count(dask_scheduler: Any) -> int:  # the scheduler object Dask passes in
        return sum(sum(p.state_counts.values()) for name, p in
                   dask_scheduler.task_prefixes.items() if name.startswith(prefix))

    with Client(address) as client:
        return client.run_on_scheduler(count)


def prep_cli(tmp_path: Path, name: str, inputs: list[str], *options: str) -> Path:
    out = tmp_path / name
    assert main(["prep", *inputs, "--out", str(out), "--chunk-size", "7", "--no-track", "-q",
                 *options]) == 0
    return out


def outputs(out: Path) -> dict[str, pd.DataFrame]:
    """Every output table, rows in a fixed order, so two preps can be compared exactly."""
    splits = {name: pd.read_parquet(out / f"{name}.parquet").sort_values(["source", "row"])
              .reset_index(drop=True) for name in ("train", "val", "test")}
    return {**splits,
            "duplicates": pd.read_csv(out / "duplicates.csv").sort_values(["source", "row"])
            .reset_index(drop=True),
            "rejects": pd.read_csv(out / "rejects.csv")}


def test_prep_on_a_cluster_equals_prep_in_this_process(cluster: str, tmp_path: Path) -> None:
    repeat = tmp_path / "repeat.csv"  # the first 40 molecules again: duplicates across inputs
    pd.read_csv(FIXTURES / "molecules.csv").head(40).to_csv(repeat, index=False)
    inputs = [str(FIXTURES / "messy.csv"), str(FIXTURES / "molecules.csv"), str(repeat)]
    before = tasks_run(cluster, "standardize_piece")
    here = outputs(prep_cli(tmp_path, "here", inputs, "--workers", "1"))
    there_dir = prep_cli(tmp_path, "there", inputs, "--cluster", cluster)
    there = outputs(there_dir)
    pieces = sum(-(-n // 7) for n in (16, 100, 40))
    assert tasks_run(cluster, "standardize_piece") - before >= pieces
    for name, table in here.items():
        pd.testing.assert_frame_equal(table, there[name], check_dtype=False, obj=name)
    dupes = there["duplicates"]
    assert (dupes["source"] == str(repeat)).sum() == 40, "every repeat across inputs found"
    counts = json.loads((there_dir / "report.json").read_text())["counts"]
    assert counts["input"] == 156
    assert counts["kept"] + counts["duplicates"] + counts["rejected"] == 156


def test_score_on_a_cluster_equals_score_in_this_process(cluster: str, tmp_path: Path,
                                                         prepared_dir: Path) -> None:
    generated = tmp_path / "generated.csv"
    pd.read_csv(FIXTURES / "molecules.csv").head(60).to_csv(generated, index=False)
    common = [str(generated), "--reference", str(prepared_dir), "--no-fcd", "--chunk-size",
              "9", "--kl-samples", "50", "--no-cache", "--no-track", "-q"]
    before = tasks_run(cluster, "describe_chunk")
    assert main(["score", *common, "--out", str(tmp_path / "here"), "--workers", "1"]) == 0
    start = time.perf_counter()
    assert main(["score", *common, "--out", str(tmp_path / "there"), "--cluster", cluster]) == 0
    assert time.perf_counter() - start < 120
    assert tasks_run(cluster, "describe_chunk") > before
    here = json.loads((tmp_path / "here" / "metrics.json").read_text())
    there = json.loads((tmp_path / "there" / "metrics.json").read_text())
    assert here["metrics"] == pytest.approx(there["metrics"], nan_ok=True)
