"""MLflow runs: one per stage, nested under a pipeline's run.

Every stage runs inside :func:`stage_run`, which yields a :class:`Tracker`. Stage code only
calls the tracker's small API (params, metrics, artifacts), so it never imports MLflow and
runs the same with tracking off (``--no-track`` gives a :class:`NullTracker`).

Defaults follow MLflow's own local conventions: a SQLite store ``mlflow.db`` and artifacts in
``./mlartifacts`` in the working directory, so ``mlflow ui`` there shows every run.
``MLFLOW_TRACKING_URI`` (and ``MLFLOW_EXPERIMENT_NAME``) point it elsewhere, e.g. a team server.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from molvae.io import exclusive, is_table_folder, table_files

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "molvae"
# MLflow 3's UI opens an experiment without this tag on an empty GenAI (traces) overview;
# molvae's experiments hold model-training runs, so they should open on the runs table
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
BEST_ALIAS = "best"
REGISTERED_DESCRIPTION = ("SELFIES GRU VAEs trained by molvae. Each version says its data, preset "
                          "and best val_loss; the alias 'best' is the lowest val_loss so far "
                          "(models:/NAME@best).")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".csv.gz", ".tsv.gz")
_METRIC_NAME = re.compile(r"[^0-9A-Za-z_\-. /:]")

log = logging.getLogger(__name__)


def metric_name(name: str) -> str:
    """An MLflow-legal metric name (MLflow rejects e.g. '@': 'unique@1000' -> 'unique_at_1000')."""
    return _METRIC_NAME.sub("_", name.replace("@", "_at_"))


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class Tracker:
    """What a stage may record. This base class records nothing (tracking turned off)."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record configuration values (nested mappings are flattened with dots)."""

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        """Record numeric results; None and non-finite values are skipped."""

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Attach a file or a whole folder to the run."""

    def log_dict(self, data: Any, name: str) -> None:
        """Attach a JSON document to the run."""

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Label the run (e.g. the stage name, the output folder)."""

    def log_pyfunc_model(self, name: str, python_model: Any, artifacts: dict[str, str],
                         pip_requirements: list[str] | None = None,
                         code_paths: list[str] | None = None, signature: Any = None,
                         input_example: Any = None) -> str | None:
        """Store an MLflow pyfunc model in the run; returns its URI."""
        return None

    def register_model(self, model_uri: str, name: str, description: str,
                       tags: Mapping[str, Any], best_by: str) -> str | None:
        """Add a logged model to the registry as a described, tagged version; returns
        ``models:/NAME/VERSION``. The alias ``best`` moves to it when its ``best_by`` tag (a
        loss: lower is better) beats the version holding the alias."""
        return None

    def log_input_table(self, path: str | Path, context: str) -> None:
        """Record a table the stage read as an MLflow dataset (a folder: its Parquet tables);
        anything else (a model folder, a SMILES, 'moses') is passed over."""


NullTracker = Tracker


class MlflowTracker(Tracker):
    """Records into the active MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        import mlflow

        flat = _flatten(params)
        items = list(flat.items())
        for start in range(0, len(items), 100):
            mlflow.log_params(dict(items[start:start + 100]))

    def log_metrics(self, metrics: Mapping[str, float | None], step: int | None = None) -> None:
        import mlflow

        clean = {metric_name(k): float(v) for k, v in metrics.items()
                 if v is not None and isinstance(v, (int, float)) and math.isfinite(v)}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        path = Path(path)
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=artifact_path)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_dict(self, data: Any, name: str) -> None:
        import mlflow

        mlflow.log_dict(data, name)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_pyfunc_model(self, name: str, python_model: Any, artifacts: dict[str, str],
                         pip_requirements: list[str] | None = None,
                         code_paths: list[str] | None = None, signature: Any = None,
                         input_example: Any = None) -> str | None:
        import mlflow

        info = mlflow.pyfunc.log_model(
            name=name, python_model=python_model, artifacts=artifacts, signature=signature,
            input_example=input_example, pip_requirements=pip_requirements, code_paths=code_paths,
        )
        return info.model_uri

    def register_model(self, model_uri: str, name: str, description: str,
                       tags: Mapping[str, Any], best_by: str) -> str | None:
        import mlflow
        from mlflow.exceptions import MlflowException

        client = mlflow.MlflowClient()
        version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
        client.update_model_version(name, version.version, description=description)
        if not client.get_registered_model(name).description:
            client.update_registered_model(name, description=REGISTERED_DESCRIPTION)
        try:
            holder = client.get_model_version_by_alias(name, BEST_ALIAS)
            current = float(holder.tags.get(best_by, math.inf))
        except MlflowException:  # no version holds the alias yet
            current = math.inf
        if float(tags[best_by]) < current:
            client.set_registered_model_alias(name, BEST_ALIAS, version.version)
        return f"models:/{name}/{version.version}"

    def log_input_table(self, path: str | Path, context: str) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            path = Path(path)
            tables = sorted(path.glob("*.parquet")) \
                if path.is_dir() and not is_table_folder(path) else [path]
            for table in tables:
                if table.exists() and table.name.lower().endswith(TABLE_SUFFIXES):
                    dataset, rows = _table_dataset(table)
                    mlflow.log_input(dataset, context=context,
                                     tags=None if rows is None else {"rows": str(rows)})
        except (OSError, ValueError, MlflowException) as error:  # a name too long for a path,
            # an unreadable table: the stage reports its inputs' faults better than this can
            log.debug("%s not recorded as a dataset: %s", path, error)


def _table_dataset(path: Path) -> tuple[Any, int | None]:
    """A schema-only MLflow dataset for a table file, and its row count where that is cheap.

    Tables reach 1.6M rows, so nothing is read in full: Parquet gives its schema and row count
    from the footer, a CSV its schema from the first rows. The digest is the file's size and
    modification time, which changes whenever a stage rewrites the file.
    """
    import pandas as pd
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    rows: int | None = None
    if path.suffix == ".parquet":
        import pyarrow.dataset

        table = pyarrow.dataset.dataset(str(path), format="parquet")
        head = table.schema.empty_table().to_pandas()
        rows = table.count_rows()
    else:
        head = pd.read_csv(path, nrows=100, sep="\t" if ".tsv" in path.suffixes else ",")
    stats = [f.stat() for f in table_files(path)]
    digest = hashlib.sha256(f"{path.resolve()}:{[(s.st_size, s.st_mtime_ns) for s in stats]}"
                            .encode())
    with warnings.catch_warnings():  # MLflow registers its local source twice and says so, and
        warnings.simplefilter("ignore")  # hints that integer columns cannot hold missing values
        source = resolve_dataset_source(str(path.resolve()))
        schema = infer_signature(head).inputs
    name = f"{path.parent.name}/{path.name}"
    return MetaDataset(source, name=name, digest=digest.hexdigest()[:8], schema=schema), rows


def configure() -> str:
    """Point MLflow at the store in use and select the experiment; returns the tracking URI."""
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    # two processes creating a fresh local store race on its tables ("table latest_metrics
    # already exists") and on the experiment, so the default store is set up under a lock
    store_lock: AbstractContextManager = nullcontext()
    if uri == DEFAULT_URI:  # absolute, so a changed working folder never reuses a cached store
        uri = f"sqlite:///{Path.cwd() / 'mlflow.db'}"
        store_lock = exclusive(Path.cwd() / "mlflow.db.lock", timeout=-1,
                               busy="process {pid} is setting up the MLflow store")
    with store_lock:
        mlflow.set_tracking_uri(uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
            location = (Path.cwd() / "mlartifacts").as_uri() if local else None
            mlflow.create_experiment(name, artifact_location=location,
                                     tags=dict([EXPERIMENT_KIND]))
        elif EXPERIMENT_KIND[0] not in experiment.tags:  # made by an older molvae or by hand
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)
        mlflow.set_experiment(name)
    return uri


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any] | None = None, enabled: bool = True,
              run_name: str | None = None) -> Iterator[Tracker]:
    """One MLflow run for one stage (nested when a pipeline run is already active).

    Args:
        stage: stage name, stored as the ``stage`` tag and the default run name.
        params: the stage config as plain data; logged as params and as ``config.json``.
        enabled: False yields a tracker that records nothing.
        run_name: overrides the run's display name.
    """
    if not enabled:
        yield NullTracker()
        return
    import mlflow

    configure()
    nested = mlflow.active_run() is not None
    with mlflow.start_run(run_name=run_name or stage, nested=nested) as run:
        tracker = MlflowTracker(run.info.run_id)
        tracker.set_tags({"stage": stage, "molvae.stage": stage})
        if params:
            tracker.log_params(params)
            tracker.log_dict(dict(params), "config.json")
        yield tracker
    if not nested:
        log.info("MLflow run: %s", run_link(run.info.experiment_id, run.info.run_id))


def run_link(experiment_id: str, run_id: str) -> str:
    """Where a person sees the run in MLflow's UI, on the model-training view: MLflow 3 opens
    every experiment on its GenAI overview (an empty traces page for molvae's runs) unless the
    link asks for ``workflowType=machine_learning``; the choice is kept per browser."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{page}"
    return f"http://127.0.0.1:5000/{page} (after: mlflow ui --backend-store-uri {uri})"
