"""The latent space of a trained model: encode data sets, fit property regressors and surrogates.

Three consumers share this module: the ``regress`` stage (how well does the latent mean μ
predict a property?), the optimizer (a regressor or a differentiable surrogate to climb), and
anyone who wants μ for a prepared split. Encodings are cached as ``.npy`` files keyed by a hash
of the model weights and of the split file, so rerunning a stage does not re-encode.

Regressors are scikit-learn estimators saved with ``skops.io`` (a format that cannot run code
on load, unlike pickle); surrogates are small torch MLPs saved as tensors plus plain data.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
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
from torch import nn

from molvae.config import ConfigError
from molvae.io import atomic_path, write_json

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------- encoding and caching

def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (read in chunks, so large splits are fine)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's weights: equal for a folder and its MLflow copy, new after training."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encode_split(model: Any, prepared_dir: str | Path, split: str,
                 cache_dir: str | Path | None = None,
                 batch_size: int = 512) -> tuple[np.ndarray, pd.DataFrame]:
    """Latent means μ of one prepared split, with the split's table row-aligned to them.

    Args:
        model: a ``SelfiesVAE`` (anything with ``encode(smiles, batch_size)`` and weights).
        prepared_dir: the output folder of ``molvae prep``.
        split: ``train``, ``val`` or ``test``.
        cache_dir: folder for cached encodings; None encodes every time.
        batch_size: molecules per encoder batch.

    Returns:
        (mu, table): float32 [N, latent_dim] and the split's DataFrame (N rows). A molecule the
        model could not tokenize has a row of NaN in ``mu``.
    """
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"prepared split not found: {path} (run `molvae prep` first)")
    table = pd.read_parquet(path)
    cached = None
    if cache_dir is not None:
        key = f"{model_fingerprint(model)[:16]}-{file_digest(path)[:16]}"
        cached = Path(cache_dir) / f"{split}-{key}.npy"
        if cached.is_file():
            mu = np.load(cached, allow_pickle=False)
            if mu.shape[0] == len(table):
                log.info("latents of %s from cache %s", split, cached)
                return mu, table
    model.eval()
    mu, _ = model.encode(table["smiles"].tolist(), batch_size=batch_size)
    mu = np.asarray(mu, dtype=np.float32)
    if cached is not None:
        with atomic_path(cached) as tmp, open(tmp, "wb") as handle:
            np.save(handle, mu)
    return mu, table


def property_values(table: pd.DataFrame, name: str, where: str = "data",
                    required: bool = True) -> np.ndarray:
    """A numeric column as float64 (NaN where missing); a missing or text column is an error.

    Properties are plain column names, so a user's own measured column (kept by ``prep``)
    works exactly like the computed ones. With ``required`` a column without any value is
    an error too.
    """
    if name not in table.columns:
        numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        raise ConfigError(f"property '{name}' is not a column of {where} "
                          f"(numeric columns: {', '.join(numeric)})")
    column = table[name]
    if not pd.api.types.is_numeric_dtype(column):
        raise ConfigError(f"property '{name}' in {where} is not numeric (dtype {column.dtype})")
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if required and not np.isfinite(values).any():
        raise ConfigError(f"property '{name}' in {where} has no values (all missing)")
    return values


def usable_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of rows with a finite latent vector and a finite target."""
    return np.isfinite(z).all(axis=1) & np.isfinite(y)


def encoded_target(z: np.ndarray, table: pd.DataFrame, name: str, where: str,
                   required: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """(z, y, skipped) for a property: rows without a latent or a target value dropped."""
    y = property_values(table, name, where, required)
    keep = usable_rows(z, y)
    return z[keep], y[keep], int((~keep).sum())


def subsample(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` (all of them if ``size`` ≥ n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


# ---------------------------------------------------------------- scikit-learn regressors

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


def load_regressor(directory: str | Path, property_name: str) -> Any:
    """The saved best regressor of a property (``.predict(z)``), loaded without unpickling.

    Args:
        directory: ``OUT/regressors`` of the regress stage, or the stage's ``OUT`` itself.
        property_name: as given to the stage (e.g. ``qed`` or a user column).
    """
    import skops.io

    directory = Path(directory)
    if (directory / "regressors").is_dir():
        directory = directory / "regressors"
    path = directory / f"{file_stem(property_name)}.skops"
    if not path.is_file():
        saved = sorted(p.stem for p in directory.glob("*.skops"))
        raise FileNotFoundError(f"no regressor for property '{property_name}' in {directory} "
                                f"(saved: {', '.join(saved) or 'none'})")
    return skops.io.load(path, trusted=TRUSTED_TYPES)


def regressor_info(directory: str | Path, property_name: str) -> dict[str, Any]:
    """The metadata saved next to a regressor (regressor name, model hash, latent_dim, scores)."""
    directory = Path(directory)
    if (directory / "regressors").is_dir():
        directory = directory / "regressors"
    return json.loads((directory / f"{file_stem(property_name)}.json").read_text())


# ---------------------------------------------------------------- differentiable surrogate

class Surrogate(nn.Module):
    """A small MLP z → property that gradients can flow through (for latent optimization).

    Inputs and target are standardized inside the module (buffers), so ``forward`` takes raw
    latent vectors and returns predictions in the property's own units, shape [N].
    """

    def __init__(self, input_dim: int, hidden_dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.input_dim, self.hidden_dim, self.num_layers = input_dim, hidden_dim, num_layers
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.SiLU()]
            width = hidden_dim
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))
        self.register_buffer("z_mean", torch.zeros(input_dim))
        self.register_buffer("z_scale", torch.ones(input_dim))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_scale", torch.ones(()))
        self.scores: dict[str, float] = {}

    def standardized(self, z: torch.Tensor) -> torch.Tensor:
        """Prediction in standard units (the training loss is measured here)."""
        return self.net((z - self.z_mean) / self.z_scale).squeeze(-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.standardized(z) * self.y_scale + self.y_mean

    @torch.no_grad()
    def predict(self, z: np.ndarray) -> np.ndarray:
        """NumPy in, NumPy out, like a scikit-learn regressor."""
        tensor = torch.as_tensor(np.asarray(z, dtype=np.float32), device=self.z_mean.device)
        return self.eval()(tensor).cpu().numpy().astype(np.float64)

    def save(self, path: str | Path) -> Path:
        """Weights plus plain config and scores (loadable with ``weights_only=True``)."""
        state = {"config": {"input_dim": self.input_dim, "hidden_dim": self.hidden_dim,
                            "num_layers": self.num_layers},
                 "scores": dict(self.scores),
                 "state_dict": {k: v.cpu() for k, v in self.state_dict().items()}}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Surrogate:
        state = torch.load(path, map_location="cpu", weights_only=True)
        surrogate = cls(**state["config"])
        surrogate.load_state_dict(state["state_dict"])
        surrogate.scores = dict(state["scores"])
        return surrogate.to(device).eval()


def fit_surrogate(z: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 200,
                  hidden_dim: int = 256, num_layers: int = 2, lr: float = 1e-3,
                  weight_decay: float = 1e-4, batch_size: int = 256, patience: int = 20,
                  val_fraction: float = 0.1,
                  validation: tuple[np.ndarray, np.ndarray] | None = None,
                  device: str | torch.device = "cpu") -> Surrogate:
    """Train a :class:`Surrogate` with AdamW and early stopping on validation MSE.

    Args:
        z, y: training latents [N, D] and targets [N]; rows with NaN are dropped.
        seed: seeds the weights, the shuffling and the validation split.
        epochs: the most passes over the data; ``patience`` epochs without a better
            validation loss stop training, and the best weights are kept.
        validation: (z_val, y_val) to stop on; without it ``val_fraction`` of the rows
            are held out.

    Returns:
        the surrogate on CPU in eval mode; ``.scores`` holds validation r2 and mae.
    """
    z, y = np.asarray(z, dtype=np.float32), np.asarray(y, dtype=np.float32)
    keep = usable_rows(z, y)
    z, y = z[keep], y[keep]
    if validation is None:
        order = np.random.default_rng(seed).permutation(len(y))
        held, kept = np.split(order, [max(1, round(len(y) * val_fraction))])
        z_val, y_val, z, y = z[held], y[held], z[kept], y[kept]
    else:
        z_val, y_val = (np.asarray(a, dtype=np.float32) for a in validation)
        held = usable_rows(z_val, y_val)
        z_val, y_val = z_val[held], y_val[held]
    if len(y) < 2 or len(y_val) < 1:
        raise ValueError(f"too few rows to fit a surrogate: {len(y)} train, {len(y_val)} val")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        surrogate = Surrogate(z.shape[1], hidden_dim, num_layers)
    surrogate.z_mean.copy_(torch.from_numpy(z.mean(axis=0)))
    surrogate.z_scale.copy_(torch.from_numpy(np.maximum(z.std(axis=0), 1e-6)))
    surrogate.y_mean.fill_(float(y.mean()))
    surrogate.y_scale.fill_(float(max(y.std(), 1e-6)))
    surrogate.to(device)
    train_z, train_y = torch.from_numpy(z).to(device), torch.from_numpy(y).to(device)
    val_z, val_y = torch.from_numpy(z_val).to(device), torch.from_numpy(y_val).to(device)
    target = (train_y - surrogate.y_mean) / surrogate.y_scale
    val_target = (val_y - surrogate.y_mean) / surrogate.y_scale
    optimizer = torch.optim.AdamW(surrogate.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch = float("inf"), surrogate.state_dict(), 0
    for epoch in range(epochs):
        surrogate.train()
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            batch = batch.to(device)
            loss = nn.functional.mse_loss(surrogate.standardized(train_z[batch]), target[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        surrogate.eval()
        with torch.no_grad():
            val_loss = nn.functional.mse_loss(surrogate.standardized(val_z), val_target).item()
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(surrogate.state_dict())
        elif epoch - best_epoch >= patience:
            break
    surrogate.load_state_dict(best_state)
    surrogate.cpu().eval()
    val_scores = regression_scores(y_val.astype(np.float64), surrogate.predict(z_val))
    surrogate.scores = {"r2": val_scores["r2"], "mae": val_scores["mae"],
                        "best_epoch": float(best_epoch + 1), "n_train": float(len(y)),
                        "n_val": float(len(y_val))}
    return surrogate


def load_surrogate(regress_dir: str | Path, property_name: str,
                   device: str | torch.device = "cpu") -> Surrogate:
    """The surrogate the regress stage saved for a property (``OUT/surrogates/{property}.pt``)."""
    path = Path(regress_dir) / "surrogates" / f"{file_stem(property_name)}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no surrogate for property '{property_name}': {path} "
                                "(run `molvae regress` with --surrogate)")
    return Surrogate.load(path, device=device)

