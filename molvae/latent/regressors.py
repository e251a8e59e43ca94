"""Property regressors on the latent space: scikit-learn estimators, scored and saved.

Regressors are saved with ``skops.io`` (a format that cannot run code on load, unlike pickle).
:class:`RegressorOptions` declares the hyper-parameter defaults; the regress stage's options
read them from here.
"""

from __future__ import annotations

import json
import math
import re
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import KFold, cross_validate
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from molvae.config import ConfigError
from molvae.io import atomic_path, unreadable, write_json
from molvae.latent.encode import subsample

REGRESSORS = ("ridge", "hgb", "gp", "mlp")
GP_KERNELS = ("matern", "rbf")
# scikit-learn types that skops does not trust by default but that our own regressors contain.
# Reviewed: plain data holders (kernels, optimizer state, tree node arrays). We only load files
# that this module wrote; anything else in a file is still refused.
TRUSTED_TYPES = [
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.gaussian_process.kernels.ConstantKernel",
    "sklearn.gaussian_process.kernels.Matern",
    "sklearn.gaussian_process.kernels.RBF",
    "sklearn.gaussian_process.kernels.Product",
    "sklearn.gaussian_process.kernels.Sum",
    "sklearn.gaussian_process.kernels.WhiteKernel",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
]


@dataclass
class RegressorOptions:
    """Hyper-parameters of the scikit-learn regressors (tests shrink them)."""

    cv_folds: int = 5
    gp_max_train: int = 1000
    gp_kernel: str = "matern"
    hgb_max_iter: int = 300
    mlp_hidden: tuple[int, ...] = (256, 128)
    mlp_max_iter: int = 300
    n_jobs: int = 1
    seed: int = 0


def make_regressor(name: str, options: RegressorOptions) -> RegressorMixin:
    """An unfitted regressor by name; inputs (and for the MLP the target) are standardized."""
    if name == "ridge":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    if name == "hgb":
        return HistGradientBoostingRegressor(max_iter=options.hgb_max_iter,
                                             random_state=options.seed)
    if name == "gp":
        shape = Matern(length_scale=10.0, nu=2.5) if options.gp_kernel == "matern" \
            else RBF(length_scale=10.0)
        kernel = ConstantKernel(1.0) * shape + WhiteKernel(noise_level=0.1)
        return make_pipeline(StandardScaler(), GaussianProcessRegressor(
            kernel=kernel, normalize_y=True, random_state=options.seed))
    if name == "mlp":
        network = MLPRegressor(hidden_layer_sizes=tuple(options.mlp_hidden),
                               max_iter=options.mlp_max_iter, early_stopping=True,
                               random_state=options.seed)
        return TransformedTargetRegressor(make_pipeline(StandardScaler(), network),
                                          transformer=StandardScaler())
    raise ConfigError(f"unknown regressor '{name}' (choose from {', '.join(REGRESSORS)})")


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², MAE, RMSE and Spearman rank correlation of predictions (NaN where undefined: R²
    of fewer than two molecules, rank correlation where either side is constant)."""
    rho = spearmanr(y_true, y_pred).statistic if min(np.ptp(y_true), np.ptp(y_pred)) > 0 \
        else np.nan
    return {"r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan,
            "mae": float(mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
            "spearman": float(rho)}


@dataclass
class FittedRegressor:
    """One regressor fitted on the training latents, with its CV and test scores."""

    name: str
    estimator: Any
    scores: dict[str, float]
    predictions: np.ndarray
    n_train: int


def fit_regressor(name: str, z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                  y_test: np.ndarray, options: RegressorOptions) -> FittedRegressor:
    """K-fold CV on train, then a final fit on train and scores on test (and the seconds taken).

    The Gaussian process sees a random subset of ``options.gp_max_train`` rows, because exact
    GP fitting grows with the cube of the number of rows.
    """
    start = time.perf_counter()
    if name == "gp":
        keep = subsample(len(y_train), options.gp_max_train, options.seed)
        z_train, y_train = z_train[keep], y_train[keep]
    folds = KFold(n_splits=options.cv_folds, shuffle=True, random_state=options.seed)
    # kernel bounds reached and MLPs stopped at max_iter are expected with capped budgets; the
    # scores below say how good the fit is, a warning per fold would only bury them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = cross_validate(make_regressor(name, options), z_train, y_train, cv=folds,
                            scoring={"r2": "r2", "mae": "neg_mean_absolute_error"},
                            n_jobs=options.n_jobs, error_score="raise")
        estimator = make_regressor(name, options).fit(z_train, y_train)
    predictions = np.asarray(estimator.predict(z_test), dtype=np.float64)
    scores = {**regression_scores(y_test, predictions),
              "cv_r2_mean": float(np.mean(cv["test_r2"])),
              "cv_r2_std": float(np.std(cv["test_r2"])),
              "cv_mae_mean": float(-np.mean(cv["test_mae"])),
              "seconds": time.perf_counter() - start}
    return FittedRegressor(name, estimator, scores, predictions, len(y_train))


def file_stem(property_name: str) -> str:
    """A file-name-safe version of a property (user columns may contain spaces or slashes)."""
    return re.sub(r"[^0-9A-Za-z_.-]", "_", property_name)


def save_regressor(estimator: Any, directory: str | Path, property_name: str,
                   metadata: dict[str, Any]) -> Path:
    """Write ``{property}.skops`` and its metadata ``{property}.json``; returns the model path."""
    import skops.io

    directory = Path(directory)
    path = directory / f"{file_stem(property_name)}.skops"
    with atomic_path(path) as tmp:
        skops.io.dump(estimator, tmp)
    write_json({"property": property_name, **metadata}, path.with_suffix(".json"))
    return path


UNREADABLE_SKOPS = (zipfile.BadZipFile, EOFError, zlib.error, ValueError, KeyError, TypeError,
                    AttributeError, IndexError, RuntimeError)
"""What ``skops.io.load`` raises on a truncated, foreign or edited file (a zip that is not one,
a schema whose parts are missing or of another type). OSErrors (permissions) pass as they are."""


def load_regressor(directory: str | Path, property_name: str) -> Any:
    """The saved best regressor of a property (``.predict(z)``), loaded without unpickling.

    Args:
        directory: ``OUT/regressors`` of the regress stage, or the stage's ``OUT`` itself.
        property_name: as given to the stage (e.g. ``qed`` or a user column).

    Raises:
        FileNotFoundError: no regressor saved for ``property_name``.
        ValueError: one line naming the file when it is damaged, edited, or holds types that
            are not ours (never loaded).
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    directory = Path(directory)
    if (directory / "regressors").is_dir():
        directory = directory / "regressors"
    path = directory / f"{file_stem(property_name)}.skops"
    if not path.is_file():
        saved = sorted(p.stem for p in directory.glob("*.skops"))
        raise FileNotFoundError(f"no regressor for property '{property_name}' in {directory} "
                                f"(saved: {', '.join(saved) or 'none'})")
    try:
        return skops.io.load(path, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as err:  # before TypeError: it is one
        raise ValueError(f"cannot load {path}: it holds types a molvae regressor never does "
                         f"({str(err).strip()[:300]}); refused, nothing in it was run") from None
    except UNREADABLE_SKOPS as err:  # a damaged or edited file: name it, no traceback
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise unreadable(path, "skops regressor", f"{type(err).__name__}: {lines[0][:200]}"
                         ) from None


def regressor_info(directory: str | Path, property_name: str) -> dict[str, Any]:
    """The metadata saved next to a regressor (regressor name, model hash, latent_dim, scores)."""
    directory = Path(directory)
    if (directory / "regressors").is_dir():
        directory = directory / "regressors"
    path = directory / f"{file_stem(property_name)}.json"
    try:
        info = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise unreadable(path, "JSON file", str(err)[:200]) from None
    if not isinstance(info, dict):
        raise ValueError(f"cannot read {path}: not a regressor's metadata (a JSON mapping)")
    return info
