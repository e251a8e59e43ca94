"""``molvae serve``: MLflow's scoring server for one model, with the guards an HTTP endpoint
needs and MLflow's server lacks.

The protocol is MLflow's own (``/invocations``, ``/ping``; see :mod:`molvae.tracking.serving`
for the columns), so clients of ``mlflow models serve`` work unchanged. On top of it:

- ``--max-samples`` bounds ``n_samples`` per request (HTTP 400 beyond it);
- every request carries a :class:`~molvae.tracking.serving.Watch`, so its work stops between
  two batches once the client has hung up, its answer is out (MLflow's 504 after ``--timeout``
  included) or the deadline passed: MLflow only stops *waiting* for a prediction, which
  otherwise ran on to the end in a worker thread, however large;
- every error answer is one line without a ``stack_trace``: MLflow's own schema and JSON errors
  span several lines and echo the request, and unexpected errors carried the traceback with
  the server's paths.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from molvae.model.store import MODEL_FILE
from molvae.tracking.models import local_model_dir
from molvae.tracking.serving import WATCH, Watch, save_pyfunc

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Awaitable[None]]

MAX_MESSAGE = 300  # characters of an error line: MLflow's messages can quote the whole input
_PREDICT_PREFIX = re.compile(r"^Failed to predict data '.*?'\.\s*Error:\s*", re.DOTALL)


def one_line(text: str) -> str:
    """An error message as one short line: MLflow's prefix quoting the request dropped,
    whitespace (newlines included) collapsed, cut at :data:`MAX_MESSAGE` characters."""
    text = " ".join(_PREDICT_PREFIX.sub("", text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 3] + "..."


def one_line_error(body: bytes) -> bytes:
    """An error response's body with a one-line ``message`` and no ``stack_trace``."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return one_line(body.decode("utf-8", "replace")).encode()
    payload.pop("stack_trace", None)
    if "message" in payload:
        payload["message"] = one_line(str(payload["message"]))
    return json.dumps(payload).encode()


class Guard:
    """ASGI middleware around MLflow's scoring app: a watch per request, one-line errors."""

    def __init__(self, app: App, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = Watch(time.monotonic() + self.timeout)
        body = await _read_body(receive)
        if body is None:  # gone before the request was complete
            return
        hung_up = asyncio.Event()

        async def listen() -> None:
            # the body is read, so the next message is the client hanging up (or, once the
            # answer is sent, the server's own end of the exchange)
            while (await receive())["type"] != "http.disconnect":
                pass
            watch.gone.set()
            hung_up.set()

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await hung_up.wait()
            return {"type": "http.disconnect"}

        listener = asyncio.create_task(listen())
        token = WATCH.set(watch)  # copied into the tasks and the worker thread started below
        try:
            await self.app(scope, replay, _one_line_errors(send))
        finally:
            WATCH.reset(token)
            watch.gone.set()  # answered (or the server is stopping): nobody reads on
            listener.cancel()


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client hung up first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _one_line_errors(send: Send) -> Send:
    """``send`` with every answer of status >= 400 rewritten by :func:`one_line_error`."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start" and message["status"] >= 400:
            start = message
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = one_line_error(b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def serve(model: str, host: str = "127.0.0.1", port: int = 5001, max_samples: int = 10_000,
          timeout: int = 60) -> None:
    """Serve ``model`` (a folder, a shipped name or an MLflow URI) until interrupted.

    The model is wrapped afresh as a pyfunc in a temporary folder, so the installed molvae
    serves it, limits included, even for a model logged by an older version (whose copy of
    the package ``mlflow models serve`` would run instead).

    Raises:
        FileNotFoundError: ``model`` holds no ``model.pt``.
        ValueError: ``max_samples`` or ``timeout`` below 1.
    """
    import mlflow.pyfunc
    import uvicorn
    from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
    from mlflow.pyfunc import scoring_server

    if max_samples < 1 or timeout < 1:
        raise ValueError(f"--max-samples and --timeout must be >= 1, got {max_samples} and "
                         f"{timeout}")
    model_dir = local_model_dir(model)
    if not (model_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{model}: no {MODEL_FILE} there (give a model folder, a "
                                "shipped model name or a models:/ or runs:/ URI)")
    os.environ[MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.name] = str(timeout)  # read by init()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a local copy
    with tempfile.TemporaryDirectory(prefix="molvae-serve-") as tmp:
        save_pyfunc(model_dir, Path(tmp) / "model", {"max_samples": max_samples})
        loaded = mlflow.pyfunc.load_model(str(Path(tmp) / "model"))
        app = Guard(scoring_server.init(loaded), timeout)
        log.info("serving %s at http://%s:%d (at most %d molecules and %d s per request)",
                 model, host, port, max_samples, timeout)
        uvicorn.run(app, host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=5)
