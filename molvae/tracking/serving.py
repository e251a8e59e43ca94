"""The trained VAE as an MLflow pyfunc model, so ``mlflow models serve`` and
``mlflow.pyfunc.load_model`` can use it without knowing molvae's API.

Input is a DataFrame with either
- a column ``n_samples``: the total number of prior samples wanted → a ``smiles`` column, or
- a column ``smiles``: molecules to encode → columns ``z_0 .. z_{d-1}`` (the posterior mean;
  NaN for a SMILES that cannot be encoded).
Optional ``params``: ``temperature``, ``seed`` (-1: unseeded) and ``prior`` (fitted or
standard) for sampling.

A caller over HTTP is not trusted with the machine, so the model holds its own limits:
``n_samples`` must add up to 1 .. ``max_samples`` (``molvae serve --max-samples``, the model
config key ``max_samples`` or ``MOLVAE_MAX_SAMPLES`` for ``mlflow models serve``; default
10,000); work runs in batches and stops between two of them once the request's deadline has
passed (MLflow has answered 504 by then) or, under ``molvae serve``, once the client has gone.
A bad request raises :class:`RequestError`: HTTP 400 with one line naming the field, never a
traceback with the server's paths (those go to the server's debug log).

A pyfunc model must be a subclass of ``mlflow.pyfunc.PythonModel``, so this module imports
MLflow; it is imported only when a model is logged or served. The model is logged from code
(``pyfunc_entry.py``), not pickled, and with a
signature whose parameter schema lets HTTP callers pass ``temperature``, ``seed`` and
``prior``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.environment_variables import MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    DEADLINE_EXCEEDED,
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
)

import molvae
from molvae.model.prior import PRIORS
from molvae.model.store import MODEL_FILE, load_model
from molvae.model.vae import SelfiesVAE
from molvae.tracking.runs import Tracker

log = logging.getLogger(__name__)

ARTIFACT = "model"
REQUIREMENTS = ["torch", "selfies", "rdkit", "pandas", "pyarrow", "numpy", "scikit-learn", "pyyaml",
                "tqdm", "mlflow"]
DEFAULT_MAX_SAMPLES = 10_000
MAX_SAMPLES_ENV = "MOLVAE_MAX_SAMPLES"
BATCH = 256  # molecules encoded between two looks at the deadline and the client
SERVING_FLAG = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"  # set by MLflow's scoring server


class RequestError(MlflowException):
    """A request the model refuses: HTTP 400 (or ``error_code``) answered with this one line.

    MLflow's scoring server rewrites the ``message`` of an exception raised by ``predict`` to
    start with the request's whole DataFrame (many lines, the input echoed back); the
    property keeps the line as raised, so ``mlflow models serve`` answers it as it is.
    """

    def __init__(self, line: str, error_code: int = INVALID_PARAMETER_VALUE) -> None:
        self._line = line
        super().__init__(line, error_code=error_code)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, value: str) -> None:  # the server's prefix is dropped (see above)
        pass


@dataclass
class Watch:
    """What ends a request's work early: its deadline (``time.monotonic()``) and an event
    that ``molvae serve`` sets when the client hangs up or the answer has been sent."""

    deadline: float = math.inf
    gone: threading.Event = field(default_factory=threading.Event)

    def check(self, done: int, wanted: int) -> None:
        """Raise (504) when nobody will read the answer; called between batches."""
        why = ("the request's deadline passed" if time.monotonic() > self.deadline else
               "the client has gone or was answered" if self.gone.is_set() else None)
        if why:
            log.warning("stopped after %d of %d molecules: %s", done, wanted, why)
            raise RequestError(f"stopped after {done} of {wanted} molecules: {why}",
                               DEADLINE_EXCEEDED)


# ``molvae serve`` sets this per request; the value reaches ``predict`` in MLflow's worker
# thread because asyncio copies the context into it.
WATCH: ContextVar[Watch | None] = ContextVar("molvae_request_watch", default=None)


def _watch() -> Watch:
    """This request's watch: the one ``molvae serve`` set, else a deadline of the MLflow
    server's request timeout when serving (no limit for ``load_model(...).predict``)."""
    watch = WATCH.get()
    if watch is not None:
        return watch
    if os.environ.get(SERVING_FLAG, "").lower() == "true":
        return Watch(time.monotonic() + MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.get())
    return Watch()


def max_samples_from(config: Mapping[str, Any] | None) -> int:
    """The per-request bound: model config ``max_samples``, else ``$MOLVAE_MAX_SAMPLES``, else
    10,000. A bad value stops the server at start rather than letting every request through."""
    raw = (config or {}).get("max_samples", os.environ.get(MAX_SAMPLES_ENV, DEFAULT_MAX_SAMPLES))
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or str(value) != str(raw).strip():
        raise ValueError(f"max_samples ({MAX_SAMPLES_ENV}) must be a whole number >= 1, "
                         f"got {raw!r}")
    return value


def _whole(value: Any) -> int | None:
    """``value`` as a Python int when it is a whole number, else None."""
    try:
        whole = int(value)
        return whole if whole == float(value) else None
    except (TypeError, ValueError, OverflowError):
        return None


def _sample_count(column: pd.Series, limit: int) -> int:
    """The total of the ``n_samples`` rows, each and all in 1..limit; added up as Python ints
    because int64 wraps around (two rows of 2**62 once made a negative count, answered [])."""
    counts = [_whole(v) for v in column]
    whole = [c for c in counts if c is not None]
    if not counts:
        bad: str | None = "no rows"
    elif len(whole) < len(counts):
        bad = "a value that is not a whole number"
    else:
        bad = next((str(c) for c in whole if not 1 <= c <= limit), None)
    if bad is None and sum(whole) > limit:
        bad = f"{sum(whole)} over {len(whole)} rows"
    if bad is not None:
        raise RequestError(f"n_samples must be from 1 to {limit} per request (the server's "
                           f"max_samples), got {bad}")
    return sum(whole)


def _sampling_params(params: Mapping[str, Any]) -> tuple[float, int | None, str]:
    """``temperature`` (finite, > 0), ``seed`` (None when negative) and ``prior``, checked."""
    try:
        temperature = float(params.get("temperature", 1.0))
    except (TypeError, ValueError):
        temperature = math.nan
    if not (math.isfinite(temperature) and temperature > 0):
        raise RequestError(f"temperature must be a finite number > 0, got "
                           f"{params.get('temperature')!r}")
    prior = str(params.get("prior", "fitted"))
    if prior not in PRIORS:
        raise RequestError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    try:
        seed = int(params.get("seed", -1))
    except (TypeError, ValueError):
        raise RequestError(f"seed must be a whole number (-1: unseeded), got "
                           f"{params.get('seed')!r}") from None
    return temperature, None if seed < 0 else seed, prior


class SelfiesVAEPyfunc(mlflow.pyfunc.PythonModel):
    """Samples molecules (``n_samples``) or encodes them (``smiles``)."""

    def load_context(self, context: Any) -> None:
        self.model: SelfiesVAE = load_model(context.artifacts[ARTIFACT])
        self.max_samples = max_samples_from(getattr(context, "model_config", None))

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """One request; refusals are one-line :class:`RequestError`, and anything else is
        logged here with its traceback and answered with one line (HTTP 500)."""
        try:
            return self._predict(model_input, params or {})
        except RequestError as err:
            log.debug("refused: %s", err.message, exc_info=True)
            raise
        except Exception as err:
            log.error("request failed", exc_info=True)
            raise RequestError(f"internal error ({type(err).__name__}); the server's log has "
                               "the details", INTERNAL_ERROR) from None

    def _predict(self, model_input: pd.DataFrame, params: Mapping[str, Any]) -> pd.DataFrame:
        watch = _watch()
        if "smiles" in model_input.columns:
            smiles = model_input["smiles"].tolist()
            rows = []
            for start in range(0, len(smiles), BATCH):
                watch.check(start, len(smiles))
                rows.append(self.model.encode(smiles[start:start + BATCH])[0])
            mu = np.concatenate(rows) if rows else np.zeros((0, self.model.latent_dim))
            return pd.DataFrame(mu, columns=[f"z_{i}" for i in range(mu.shape[1])])
        if "n_samples" in model_input.columns:
            n = _sample_count(model_input["n_samples"], self.max_samples)
            temperature, seed, prior = _sampling_params(params)
            # the model's own batches, so a seed gives what `molvae sample --seed` gives
            drawn = self.model.sample(n, temperature=temperature, seed=seed, prior=prior,
                                      before_batch=lambda done: watch.check(done, n))
            return pd.DataFrame({"smiles": drawn})
        raise RequestError("input needs a 'smiles' column (encode) or an 'n_samples' column "
                           f"(sample); got columns {list(model_input.columns)}")


def signature() -> Any:
    """Either input column (both optional), and the sampling parameters with their defaults."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("long", "n_samples", required=False),
                     ColSpec("string", "smiles", required=False)])
    params = ParamSchema([ParamSpec("temperature", "double", 1.0),
                          ParamSpec("seed", "long", -1),
                          ParamSpec("prior", "string", "fitted")])
    return ModelSignature(inputs=inputs, params=params)


def save_pyfunc(model_dir: str | Path, path: str | Path,
                model_config: Mapping[str, Any] | None = None) -> None:
    """Write ``MODEL_DIR/model.pt`` as a pyfunc model folder at ``path`` with ``model_config``
    (e.g. ``max_samples``), as ``molvae serve`` does before loading it. No run, and no copy of
    the package: the installed molvae serves it."""
    with warnings.catch_warnings():  # "no input example": running one would load the model
        warnings.simplefilter("ignore", UserWarning)
        mlflow.pyfunc.save_model(
            str(path), python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={ARTIFACT: str(Path(model_dir) / MODEL_FILE)},
            pip_requirements=REQUIREMENTS, signature=signature(),
            model_config=dict(model_config or {}))


def log_model(tracker: Tracker, model_dir: str | Path, registered_name: str | None = None,
              description: str = "", tags: Mapping[str, Any] | None = None) -> str | None:
    """Attach ``MODEL_DIR/model.pt`` to the run as a pyfunc model; returns its URI.

    The molvae package travels with the model (``code_paths``), so ``mlflow models serve``
    works in any environment with the listed requirements; ``registered_name`` also adds it
    to the model registry as a new version (``models:/NAME/VERSION``) with ``description`` and
    ``tags``, which must hold ``best_val_loss``: the alias ``best`` follows the lowest.
    """
    package = Path(molvae.__file__).parent
    uri = tracker.log_pyfunc_model(
        name="model", python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
        artifacts={ARTIFACT: str(Path(model_dir) / MODEL_FILE)},
        pip_requirements=REQUIREMENTS, code_paths=[str(package)], signature=signature(),
        input_example=pd.DataFrame({"n_samples": [2]}),
    )
    if uri and registered_name:
        tracker.register_model(uri, registered_name, description, tags or {},
                               best_by="best_val_loss")
    return uri
