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


def _listed(items: str | Sequence[str]) -> list[str]:
    """The items as a list; a lone string is one item (``list("CCO")`` would be three
    one-atom molecules, silently)."""
    return [items] if isinstance(items, str) else list(items)


def sample(model: Any, n: int, temperature: float = 1.0, seed: int | None = 0,
           prior: str = "fitted") -> list[str | None]:
    """``n`` SMILES decoded from the ``fitted`` (or ``standard``) prior at ``temperature``."""
    return _model(model).sample(n, temperature=temperature, seed=seed, prior=prior)


def encode(model: Any, smiles: str | Sequence[str]) -> np.ndarray:
    """Posterior means [N, latent_dim] (float32; one row for a lone SMILES string); NaN rows
    for molecules it cannot encode, as are those with atoms the model never saw (:func:`elbo`
    says why per molecule)."""
    return _model(model).encode(_listed(smiles))[0]


def decode(model: Any, z: Any, greedy: bool = True, temperature: float = 1.0,
           seed: int | None = 0) -> list[str | None]:
    """Canonical SMILES per latent row of ``z`` [N, latent_dim] (array or tensor); a row with
    NaN or inf is a ValueError naming it."""
    return _model(model).decode(z, greedy=greedy, temperature=temperature, seed=seed)


def interpolate(model: Any, a: str, b: str, steps: int = 10, method: str = "spherical"
                ) -> list[str | None]:
    """SMILES at ``steps`` points from molecule ``a`` to ``b`` (``linear`` or ``spherical``)."""
    from molvae.model.ops import interpolate as path

    return path(_model(model), a, b, steps, method)["smiles"].tolist()


def reconstruct(model: Any, smiles: str | Sequence[str]) -> list[str | None]:
    """Greedy decoding of each molecule's posterior mean (None for unusable input, or atoms
    the model never saw); a lone string is one molecule."""
    return _model(model).reconstruct(_listed(smiles))


def elbo(model: Any, smiles: str | Sequence[str], latents: bool = False) -> pd.DataFrame:
    """The ELBO terms per molecule (``molvae encode``'s table; ``molvae score`` is another
    thing, the MOSES metrics of a generated set): smiles, reason, neg_elbo, nll, nll_per_token,
    kl, n_tokens, unknown_tokens (and mu_*/sigma_* with ``latents``). A high negative ELBO
    means out of distribution; a molecule with tokens the model never saw has NaN scores and
    says so in ``reason``."""
    from molvae.model.ops import elbo_terms

    return elbo_terms(_model(model), _listed(smiles)).table(latents=latents)


def predict(model: Any, smiles: str | Sequence[str], regress: str | Path | None = None,
            properties: str | Sequence[str] = ()) -> pd.DataFrame:
    """Predicted properties (columns ``pred_*``) from the saved regressors of ``molvae regress``
    (``regress``: its output folder) or from the model's property head."""
    import pandas as pd

    from molvae.stages.predict import predict_table

    vae = _model(model)
    molecules = _listed(smiles)
    mu = encode(vae, molecules)
    values, _ = predict_table(vae, mu, Path(regress) if regress else None,
                              _listed(properties))
    return pd.DataFrame({"smiles": molecules, **{f"pred_{p}": v for p, v in values.items()}})


def optimize(model: Any, objective: str | Callable[[str], float], budget: int | None = None,
             method: str | None = None, out: str | Path | None = None, **options: Any
             ) -> pd.DataFrame:
    """Search the latent space for molecules maximizing ``objective`` (``molvae optimize``,
    through the same :func:`molvae.optim.optimize.optimize`).

    Args:
        model: a loaded model (searched on its own device), a model folder or an MLflow model
            URI (loaded on ``device``, an option, default auto).
        objective: a Python function ``f(smiles) -> float`` (higher is better; an exception
            scores NaN) or any ``--objective`` spec (``qed``, ``min:sa``, ``mpo.yaml``, ...).
        budget: oracle calls (new unique valid molecules scored; default: the CLI's).
        method: ``policy`` (the decoder fine-tuned toward the objective, the default),
            ``cmaes``, ``bo``, ``gradient`` or ``random``.
        out: where the outputs go (default: a temporary folder, removed after a run that
            succeeds; a run that fails or is interrupted keeps it, calls.csv with the paid
            oracle calls included, and says where).
        options: any other key of ``molvae optimize`` (``data``, ``seed``, ``start``,
            ``cmaes_sigma``, ``policy_sigma``, ...; :class:`molvae.optim.settings.Settings`).

    Returns:
        The ranked candidates table; ``table.attrs["metrics"]`` holds the run's summary.
    """
    import logging
    import shutil

    import pandas as pd

    from molvae.config import ConfigError, from_dict
    from molvae.optim.objective_spec import parse_objective
    from molvae.optim.objectives import CallableObjective, Objective
    from molvae.optim.optimize import optimize as run
    from molvae.optim.settings import Settings

    device = options.pop("device", "auto")
    chosen = {key: value for key, value in (("budget", budget), ("method", method))
              if value is not None}
    settings = from_dict(Settings, {**chosen, **options}, where="optimize")
    if isinstance(objective, Objective):
        goal = objective
    elif isinstance(objective, str):
        try:
            goal = parse_objective(objective)
        except ConfigError as err:
            raise ConfigError(f"optimize: objective: {err}") from None
    else:
        goal = CallableObjective(objective)
    vae = load(model, device) if isinstance(model, (str, Path)) else model
    folder = Path(out) if out is not None else \
        Path(tempfile.mkdtemp(prefix="molvae-optimize-")) / "optimize"
    try:
        outcome = run(vae, goal, settings, folder)
        table = pd.read_csv(folder / "candidates.csv")
    except BaseException:
        if out is None and folder.is_dir():  # its paid oracle calls outlive the run
            logging.getLogger(__name__).warning(
                "optimize did not finish; its outputs and paid oracle calls are kept in %s",
                folder)
        elif out is None:
            shutil.rmtree(folder.parent, ignore_errors=True)
        raise
    if out is None:
        shutil.rmtree(folder.parent, ignore_errors=True)
    table.attrs["metrics"] = dict(outcome.metrics)
    return table


def analogs(model: Any, smiles: str | Sequence[str], n: int = 50,
            similarity: tuple[float, float] = (0.4, 0.8), rounds: int = 8, seed: int = 0
            ) -> pd.DataFrame:
    """Up to ``n`` analogs per parent molecule with Tanimoto similarity to it in
    ``similarity``, decoded around its posterior: columns parent_index, parent, smiles,
    similarity, spread (see :mod:`molvae.model.analogs`). ``attrs["parents"]`` holds the
    per-parent summary (analogs found, and why a parent that cannot be encoded has none)."""
    from molvae.model.analogs import generate_analogs

    parents = [smiles] if isinstance(smiles, str) else list(smiles)
    table, summary = generate_analogs(_model(model), parents, n, similarity, rounds, seed=seed)
    table.attrs["parents"] = summary
    return table
