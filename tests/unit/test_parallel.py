"""The engine: results in input order, small jobs in this process, bounded work in flight."""

import os

from molvae.parallel import cluster_address, engine, map_chunks, map_ordered


def pid_and_double(chunk: list[int]) -> list[tuple[int, int]]:
    return [(os.getpid(), 2 * x) for x in chunk]


def test_one_worker_works_in_this_process_in_order() -> None:
    out = map_chunks(pid_and_double, list(range(10)), workers=1, chunk_size=3)
    assert [x for _, x in out] == [2 * i for i in range(10)]
    assert {pid for pid, _ in out} == {os.getpid()}


def test_a_local_cluster_keeps_order_and_pulls_lazily() -> None:
    pulled = []

    def pieces():
        for i in range(12):
            pulled.append(i)
            yield [i]

    with engine(None, workers=2) as current:
        results = map_ordered(pid_and_double, pieces(), workers=2)
        first = next(results)
        in_flight = len(pulled)
        rest = list(results)
        assert current.distributed
    assert in_flight <= 2 * 2 + 1, "the whole input was read before the first result"
    assert [x for _, x in [*first, *[r for part in rest for r in part]]] == \
        [2 * i for i in range(12)]
    assert os.getpid() not in {pid for part in [first, *rest] for pid, _ in part}


def test_cluster_address_comes_from_the_option_or_dask_variable(monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    assert cluster_address(None) is None
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.5:8786")
    assert cluster_address(None) == "tcp://10.0.0.5:8786"
    assert cluster_address("local") is None
    assert cluster_address("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1"


def test_a_script_without_a_main_guard_can_use_the_local_cluster(tmp_path) -> None:
    """Spawned workers would re-run such a script and fail; local workers are forked."""
    import subprocess
    import sys

    script = tmp_path / "user_script.py"
    script.write_text("from molvae.parallel import map_chunks\n"
                      "print(sum(map_chunks(lambda c: [x * 2 for x in c], list(range(10)), "
                      "workers=2, chunk_size=2)))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "90"
