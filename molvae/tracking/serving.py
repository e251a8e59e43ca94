"""The trained VAE as an MLflow pyfunc model, so ``mlflow models serve`` and
``mlflow.pyfunc.load_model`` can use it without knowing molvae's API.

Input is a DataFrame with either
- a column ``n_samples``: the total number of prior samples wanted → a ``smiles`` column, or
- a column ``smiles``: molecules to encode → columns ``z_0 .. z_{d-1}`` (the posterior mean;
  NaN for a SMILES that cannot be encoded).
Optional ``params``: ``temperature``, ``seed`` (-1: unseeded) and ``prior`` (fitted or
standard) for sampling.

A pyfunc model must be a subclass of ``mlflow.pyfunc.PythonModel``, so this module imports
MLflow; it is imported only when a model is logged or served. The model is logged from code
(``pyfunc_entry.py``), not pickled, and with a
signature whose parameter schema lets HTTP callers pass ``temperature``, ``seed`` and
``prior``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

import molvae
from molvae.model.store import MODEL_FILE, load_model
from molvae.model.vae import SelfiesVAE
from molvae.tracking.runs import Tracker

ARTIFACT = "model"
REQUIREMENTS = ["torch", "selfies", "rdkit", "pandas", "pyarrow", "numpy", "scikit-learn", "pyyaml",
                "tqdm", "mlflow"]


class SelfiesVAEPyfunc(mlflow.pyfunc.PythonModel):
    """Samples molecules (``n_samples``) or encodes them (``smiles``)."""

    def load_context(self, context: Any) -> None:
        self.model: SelfiesVAE = load_model(context.artifacts[ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        if "smiles" in model_input.columns:
            mu, _ = self.model.encode(model_input["smiles"].tolist())
            return pd.DataFrame(mu, columns=[f"z_{i}" for i in range(mu.shape[1])])
        if "n_samples" in model_input.columns:
            n = int(model_input["n_samples"].sum())
            seed = int(params.get("seed", -1))
            smiles = self.model.sample(n, temperature=float(params.get("temperature", 1.0)),
                                       seed=None if seed < 0 else seed,
                                       prior=str(params.get("prior", "fitted")))
            return pd.DataFrame({"smiles": smiles})
        raise ValueError("input needs a 'smiles' column (encode) or an 'n_samples' column "
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
