"""The Python API: what a notebook needs, one function each (re-exported by ``molvae``).

Every function takes a model loaded by :func:`load` (or a model folder / MLflow model URI,
loaded on the fly) and speaks SMILES. Heavy libraries are imported inside the functions, so
``import molvae`` stays fast.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from molvae.model.vae import SelfiesVAE



def load(path_or_uri: str | Path, device: str = "auto") -> SelfiesVAE:
    """A trained model from its folder (``molvae train --out``), ``models:/NAME/VERSION`` or
    ``runs:/RUN_ID/model``, in eval mode on ``device`` (auto: cuda > mps > cpu)."""
    from molvae.model.store import load_model
    from molvae.tracking import local_model_dir

    return load_model(local_model_dir(path_or_uri), device)


def _model(model: Any) -> SelfiesVAE:
    return load(model) if isinstance(model, (str, Path)) else model


def sample(model: Any, n: int, temperature: float = 1.0, seed: int | None = 0,
           prior: str = "fitted") -> list[str | None]:
    """``n`` SMILES decoded from the ``fitted`` (or ``standard``) prior at ``temperature``."""
    return _model(model).sample(n, temperature=temperature, seed=seed, prior=prior)


def encode(model: Any, smiles: Sequence[str]) -> np.ndarray:
    """Posterior means [N, latent_dim] (float32); NaN rows for molecules it cannot encode."""
    return _model(model).encode(list(smiles))[0]


def decode(model: Any, z: Any, greedy: bool = True, temperature: float = 1.0,
           seed: int | None = 0) -> list[str | None]:
    """Canonical SMILES per latent row of ``z`` [N, latent_dim] (array or tensor)."""
    return _model(model).decode(z, greedy=greedy, temperature=temperature, seed=seed)


def interpolate(model: Any, a: str, b: str, steps: int = 10, method: str = "spherical"
                ) -> list[str | None]:
    """SMILES at ``steps`` points from molecule ``a`` to ``b`` (``linear`` or ``spherical``)."""
    from molvae.model.ops import interpolate as path

    return path(_model(model), a, b, steps, method)["smiles"].tolist()


def reconstruct(model: Any, smiles: Sequence[str]) -> list[str | None]:
    """Greedy decoding of each molecule's posterior mean (None for unusable input)."""
    return _model(model).reconstruct(list(smiles))


def score(model: Any, smiles: Sequence[str], latents: bool = False) -> pd.DataFrame:
    """Per molecule: smiles, reason, neg_elbo, nll, nll_per_token, kl, n_tokens, unknown_tokens
    (and mu_*/sigma_* with ``latents``). A high negative ELBO means out of distribution."""
    from molvae.model.ops import elbo_terms

    return elbo_terms(_model(model), list(smiles)).table(latents=latents)


def predict(model: Any, smiles: Sequence[str], regress: str | Path | None = None,
            properties: Sequence[str] = ()) -> pd.DataFrame:
    """Predicted properties (columns ``pred_*``) from the saved regressors of ``molvae regress``
    (``regress``: its output folder) or from the model's property head."""
    import pandas as pd

    from molvae.stages.predict import predict_table

    vae = _model(model)
    mu = encode(vae, smiles)
    values, _ = predict_table(vae, mu, Path(regress) if regress else None, list(properties))
    return pd.DataFrame({"smiles": list(smiles), **{f"pred_{p}": v for p, v in values.items()}})


def optimize(model: Any, objective: str | Callable[[str], float], budget: int = 100,
             method: str = "policy", out: str | Path | None = None, **options: Any
             ) -> pd.DataFrame:
    """Search the latent space for molecules maximizing ``objective`` (``molvae optimize``).

    Args:
        model: a loaded model, a model folder or an MLflow model URI.
        objective: a Python function ``f(smiles) -> float`` (higher is better; an exception
            scores NaN) or any ``--objective`` spec (``qed``, ``min:sa``, ``mpo.yaml``, ...).
        budget: oracle calls (new unique valid molecules scored).
        method: ``policy`` (the decoder fine-tuned toward the objective), ``cmaes``,
            ``bo``, ``gradient`` or ``random``.
        out: where the stage writes its outputs (default: a temporary folder, removed).
        options: any other key of ``molvae optimize`` (``data``, ``seed``, ``start``, ...).

    Returns:
        The ranked candidates table; ``table.attrs["metrics"]`` holds the run's summary.
    """
    import pandas as pd

    from molvae.config import from_dict
    from molvae.model.store import save_model
    from molvae.optim.objectives import CallableObjective, Objective
    from molvae.stages import optimize as stage

    with tempfile.TemporaryDirectory(prefix="molvae-optimize-") as tmp:
        values: dict[str, Any] = {"budget": budget, "method": method,
                                  "out": str(out or Path(tmp) / "optimize"), **options}
        if isinstance(model, (str, Path)):
            values["model"] = str(model)
        else:
            values["model"] = str(save_model(model, Path(tmp) / "model").parent)
            values.setdefault("device", str(model.device))
        config_class = stage.OptimizeConfig
        if isinstance(objective, str):
            values["objective"] = objective
        else:
            chosen = objective if isinstance(objective, Objective) else \
                CallableObjective(objective)
            values["objective"] = chosen.name

            class config_class(stage.OptimizeConfig):  # noqa: N801 -- the objective, not a spec
                def parsed_objective(self) -> Objective:
                    return chosen

        result = stage.run(from_dict(config_class, values, where="optimize"))
        table = pd.read_csv(Path(result.out) / "candidates.csv")
    table.attrs["metrics"] = dict(result.metrics)
    return table
