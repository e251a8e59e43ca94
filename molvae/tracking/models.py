"""Model URIs: ``models:/NAME/VERSION`` and ``runs:/ID/PATH`` resolved to local folders."""

from __future__ import annotations

from pathlib import Path

from molvae.model.pretrained import pretrained_dir
from molvae.tracking.runs import configure


def is_model_uri(path: str | Path) -> bool:
    """True for MLflow model URIs (``models:/NAME/VERSION``, ``runs:/ID/PATH``)."""
    return str(path).startswith(("models:/", "runs:/"))


def local_model_dir(spec: str | Path) -> Path:
    """A model given as a folder, the name of a model shipped with molvae (``moses``), or an
    MLflow URI, as a local folder holding its ``model.pt``.

    Stages call this before :func:`molvae.model.store.load_model`, which reads local files
    only, so the network code never depends on MLflow. A folder of the same name as a
    shipped model wins over it.

    Raises:
        FileNotFoundError: the URI holds no molvae model.
    """
    if not is_model_uri(spec):
        path = Path(spec)
        shipped = pretrained_dir(str(spec))
        return shipped if shipped is not None and not path.exists() else path
    import mlflow

    configure()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(spec)))
    found = sorted(local.rglob("model.pt"))
    if not found:
        raise FileNotFoundError(f"{spec} holds no molvae model (no model.pt)")
    return found[0].parent
