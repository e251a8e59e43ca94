"""The model server against a hostile caller (issue 25, items 5, 7 and 9): counts out of range
are 400, errors are one line without tracebacks, and work stops once nobody waits for it.

One ``molvae serve`` on loopback serves the tiny model for the module; the ``mlflow models
serve`` path is checked in-process through MLflow's own ``invocations`` function.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from molvae.cli import main
from molvae.config import ConfigError
from molvae.optim.objective_spec import parse_objective
from tests.integration.servers import free_port, wait_until_up

pytestmark = pytest.mark.integration

LIMIT = 1_000_000  # the test server's --max-samples: large, so long requests can be asked for
TIMEOUT = 3  # the test server's --timeout (seconds)


class Server:
    """A running ``molvae serve`` and the file its log goes to."""

    def __init__(self, base: str, log: Path) -> None:
        self.base, self.log = base, log

    def post(self, payload: Any, timeout: float = 30) -> tuple[int, Any]:
        """(HTTP status, parsed JSON body or text) of one /invocations request."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.base}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            status, text = err.code, err.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def wait_for_log(self, text: str, seconds: float = 20) -> str:
        """The log line holding ``text``, once it appears."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [line for line in self.log.read_text().splitlines() if text in line]
            if found:
                return found[0]
            time.sleep(0.2)
        pytest.fail(f"no {text!r} in the server's log:\n{self.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    port, log = free_port(), folder / "server.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "molvae.cli", "serve", str(tiny_model), "--port", str(port),
             "--max-samples", str(LIMIT), "--timeout", str(TIMEOUT)],
            cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=sink,
            stderr=subprocess.STDOUT)
    process.stderr = open(log, "rb")  # what wait_until_up shows if the server dies
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(process, f"{base}/ping", 120)
        yield Server(base, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


def samples(*counts: int, **params: Any) -> dict:
    return {"dataframe_split": {"columns": ["n_samples"], "data": [[c] for c in counts]},
            "params": params}


def assert_one_line_refusal(status: int, body: Any, *words: str) -> None:
    """HTTP 400 with one line that names ``words``; no traceback, no server path."""
    assert status == 400, body
    assert isinstance(body, dict) and "stack_trace" not in body, body
    message = body["message"]
    assert "\n" not in message and len(message) <= 300, message
    assert "Traceback" not in json.dumps(body) and "site-packages" not in json.dumps(body)
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("counts", [(0,), (-3,), (2**62, 2**62), (LIMIT // 2 + 1, LIMIT // 2),
                                    ()], ids=["zero", "negative", "int64-overflow",
                                              "over-the-bound", "no-rows"])
def test_sample_counts_out_of_range_are_400_naming_the_field(server: Server,
                                                             counts: tuple[int, ...]) -> None:
    status, body = server.post(samples(*counts))  # each was 200 with [] (or ran unbounded)
    assert_one_line_refusal(status, body, "n_samples", f"1 to {LIMIT}")


def test_a_good_request_still_answers(server: Server) -> None:
    status, first = server.post(samples(2, 3, seed=7))
    assert status == 200 and len(first["predictions"]) == 5
    assert server.post(samples(2, 3, seed=7))[1] == first


@pytest.mark.parametrize("payload", [
    samples(2, prior="bogus"),  # was a ValueError's traceback with the server's paths
    b'{"dataframe_split": {"columns": ["n_samples"], "data": [[2]]}, '
    b'"params": {"temperature": NaN}}',  # was a RuntimeError's traceback from sampling
    b"not json",  # MLflow's own message: several lines echoing the input
    samples(2, temperature="warm"),  # MLflow's own, starting with the request's DataFrame
], ids=["prior", "nan-temperature", "not-json", "param-type"])
def test_bad_requests_get_one_line_without_a_traceback(server: Server, payload: Any) -> None:
    status, body = server.post(payload)
    assert_one_line_refusal(status, body)


def test_work_stops_when_the_deadline_passes(server: Server) -> None:
    started = time.monotonic()
    status, _ = server.post(samples(LIMIT), timeout=60)  # minutes of work for the tiny model
    assert status == 504 and time.monotonic() - started < TIMEOUT + 10
    line = server.wait_for_log(f"of {LIMIT} molecules")  # was: generation ran on to the end
    assert "stopped after" in line


def test_work_stops_when_the_client_hangs_up(server: Server) -> None:
    wanted = LIMIT - 1
    with pytest.raises((TimeoutError, socket.timeout, urllib.error.URLError)):
        server.post(samples(wanted), timeout=0.5)  # gives up long before the deadline
    line = server.wait_for_log(f"of {wanted} molecules")
    assert "the client has gone" in line, line


def test_mlflow_models_serve_refuses_in_one_line_and_keeps_its_deadline(
        tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``mlflow models serve`` runs per request, without its HTTP layer."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc.scoring_server import invocations

    from molvae.tracking.serving import save_pyfunc

    save_pyfunc(tiny_model, tmp_path / "model", {"max_samples": LIMIT})
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    schema = model.metadata.get_input_schema()

    def ask(payload: dict) -> MlflowException:
        with pytest.raises(MlflowException) as raised:
            invocations(json.dumps(payload), "application/json", model, schema)
        return raised.value

    refused = ask(samples(0))  # was 200 with []
    assert_one_line_refusal(refused.get_http_status_code(),
                            json.loads(refused.serialize_as_json()), "n_samples")
    refused = ask(samples(2, prior="bogus"))  # was a traceback
    assert_one_line_refusal(refused.get_http_status_code(),
                            json.loads(refused.serialize_as_json()), "prior")
    monkeypatch.setenv("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    monkeypatch.setenv("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "1")
    started = time.monotonic()
    stopped = ask(samples(LIMIT))  # was minutes of work after MLflow's 504
    assert stopped.get_http_status_code() == 504 and time.monotonic() - started < 10


def test_serve_help_documents_the_bound(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-samples" in text and "(default: 10000)" in text and "--timeout" in text


@pytest.mark.parametrize(("combine", "weights"), [("product", [".inf"]), ("sum", [".inf", "1"]),
                                                  ("sum", ["0", "0"])])
def test_objectives_refuse_weights_that_zero_every_score(tmp_path: Path, combine: str,
                                                         weights: list[str]) -> None:
    """An infinite weight in a product, or all weights 0, scored every molecule 0 and
    "succeeded"."""
    terms = "".join(f"  - {{name: qed, weight: {w}}}\n" for w in weights)
    path = tmp_path / "mpo.yaml"
    path.write_text(f"combine: {combine}\nterms:\n{terms}")
    with pytest.raises(ConfigError, match="weight"):
        parse_objective(str(path))
