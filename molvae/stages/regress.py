"""The regress stage: how well does the latent space know a property?

Encode the prepared splits to latent means μ (cached), then per property fit scikit-learn
regressors (ridge, gradient boosting, Gaussian process, MLP) with k-fold CV on train and score
them on test. The best of them by CV R² is saved (``molvae predict`` and your own code can
apply it), together with a differentiable torch surrogate (early-stopped on the val split) that
the optimizer's gradient method climbs. A model trained with a joint
property head is scored too (as ``head``), so the two ways of getting properties from z can be
compared; ``head`` and ``surrogate`` have test scores but no CV, so they are never "best".

Outputs in ``OUT``: scores.json / scores.csv, report.json, regressors/{property}.skops (+ .json),
surrogates/{property}.pt, plots/*.png, cache/*.npy (latents).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from molvae import plots
from molvae.config import ConfigError, batch_size_option, device_option, model_option, option
from molvae.data.prep import SPLITS
from molvae.io import write_json, write_table
from molvae.latent.encode import (
    encode_split,
    encoded_target,
    model_fingerprint,
    property_values,
    subsample,
)
from molvae.latent.regressors import (
    GP_KERNELS,
    REGRESSORS,
    FittedRegressor,
    RegressorOptions,
    file_stem,
    fit_regressor,
    regression_scores,
    save_regressor,
)
from molvae.latent.surrogate import SURROGATE_EPOCHS, SURROGATE_HIDDEN, fit_surrogate
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import require_gaussian
from molvae.tracking import Tracker, local_model_dir

log = logging.getLogger(__name__)

Split = tuple[np.ndarray, pd.DataFrame]  # a split's latent means [N, D] and its table


@dataclass
class RegressConfig:
    """Options of ``molvae regress``."""

    model: str = model_option()
    data: Path = option(help="prepared data folder (`molvae prep --out`)")
    properties: list[str] = option(["qed", "logp", "sa"],
                                   help="numeric columns of the prepared data to predict "
                                   "(computed properties or your own, e.g. activity)")
    out: Path = option(Path("regress"), help="output folder")
    regressors: list[str] = option(list(REGRESSORS),
                                   help=f"regressors to fit ({', '.join(REGRESSORS)})")
    cv_folds: int = option(RegressorOptions.cv_folds, help="folds of the cross-validation on "
                           "train")
    max_train: int | None = option(50000, help="fit on a random subset of at most this many "
                                   "training molecules (null in YAML = all)")
    gp_max_train: int = option(RegressorOptions.gp_max_train,
                               help="training molecules for the Gaussian process (exact GP "
                               "fitting grows with the cube of this)")
    gp_kernel: str = option(RegressorOptions.gp_kernel, help="Gaussian process kernel: matern "
                            "or rbf (times a constant, plus white noise)")
    hgb_max_iter: int = option(RegressorOptions.hgb_max_iter,
                               help="boosting rounds of the gradient-boosting regressor")
    mlp_hidden: list[int] = option(list(RegressorOptions.mlp_hidden),
                                   help="hidden layer sizes of the scikit-learn MLP")
    mlp_max_iter: int = option(RegressorOptions.mlp_max_iter,
                               help="most epochs of the scikit-learn MLP")
    surrogate: bool = option(True, help="also train a differentiable torch surrogate per "
                             "property (for gradient-based optimization)")
    surrogate_epochs: int = option(SURROGATE_EPOCHS,
                                   help="most epochs of the surrogate (early stopping)")
    surrogate_hidden: int = option(SURROGATE_HIDDEN,
                                   help="hidden width of the surrogate's two layers")
    cache: bool = option(True, help="cache encoded latents and reuse them on rerun")
    cache_dir: Path | None = option(None, help="latent cache folder (default OUT/cache)")
    batch_size: int = batch_size_option(512)
    device: str = device_option()
    n_jobs: int = option(RegressorOptions.n_jobs,
                         help="parallel cross-validation fits (-1 = all cores)")
    plot_points: int = option(5000, help="molecules shown in the latent PCA plot")
    seed: int = option(0, help="random seed (subsets, CV folds, regressors, surrogate)")

    def validate(self) -> None:
        if not self.properties:
            raise ConfigError("properties: name at least one column to predict")
        if len(set(self.properties)) != len(self.properties):
            raise ConfigError(f"properties: names repeat: {', '.join(self.properties)}")
        unknown = [r for r in self.regressors if r not in REGRESSORS]
        if unknown or not self.regressors:
            raise ConfigError(f"regressors: unknown {unknown or '(none given)'} "
                              f"(choose from {', '.join(REGRESSORS)})")
        if self.gp_kernel not in GP_KERNELS:
            raise ConfigError(f"gp_kernel must be one of {', '.join(GP_KERNELS)}, "
                              f"got '{self.gp_kernel}'")
        if self.cv_folds < 2:
            raise ConfigError(f"cv_folds must be at least 2, got {self.cv_folds}")
        for key in ("max_train", "gp_max_train"):
            value = getattr(self, key)
            if value is not None and value < 2 * self.cv_folds:
                raise ConfigError(f"{key} must be at least 2 * cv_folds, got {value}")

    def regressor_options(self) -> RegressorOptions:
        return RegressorOptions(
            cv_folds=self.cv_folds, gp_max_train=self.gp_max_train, gp_kernel=self.gp_kernel,
            hgb_max_iter=self.hgb_max_iter, mlp_hidden=tuple(self.mlp_hidden),
            mlp_max_iter=self.mlp_max_iter, n_jobs=self.n_jobs, seed=self.seed)


@dataclass
class RegressResult:
    """Scores per property and regressor, and the regressor chosen per property."""

    out: Path
    scores: dict[str, dict[str, dict[str, float | None]]] = field(default_factory=dict)
    best: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"regress {self.out} ({self.seconds:.1f} s): test R² / MAE"]
        for prop, by_name in self.scores.items():
            parts = [f"{name} {s['r2']:.3f}/{s['mae']:.3g}" for name, s in by_name.items()]
            lines.append(f"  {prop:12s} best {self.best[prop]:9s} | " + ", ".join(parts))
        return "\n".join(lines)

    def headline(self) -> dict[str, float]:
        """Test R² and MAE per property of the regressor chosen for it."""
        numbers = {}
        for prop, name in self.best.items():
            for key in ("r2", "mae"):
                value = self.scores[prop][name].get(key)
                if value is not None:
                    numbers[f"{prop}_{key}"] = float(value)
        return numbers


def _training_rows(z: np.ndarray, y: np.ndarray, config: RegressConfig,
                   prop: str) -> tuple[np.ndarray, np.ndarray]:
    """The training subset (``max_train``); too few rows to cross-validate is an error."""
    if len(y) < 2 * config.cv_folds:
        raise ConfigError(f"property '{prop}': only {len(y)} training molecules have a value; "
                          f"{config.cv_folds}-fold CV needs at least {2 * config.cv_folds}")
    keep = subsample(len(y), config.max_train, config.seed)
    return z[keep], y[keep]


def _head_scores(model: SelfiesVAE, prop: str, z_test: np.ndarray,
                 y_test: np.ndarray) -> dict[str, float | None] | None:
    """Test scores of the model's own joint property head, when it predicts ``prop``."""
    names = list(model.config.property_names)
    if prop not in names:
        return None
    predictions = model.predict_properties(z_test)[:, names.index(prop)].astype(np.float64)
    return {**regression_scores(y_test, predictions), "cv_r2_mean": None,
            "cv_r2_std": None}


def _fit_surrogate(config: RegressConfig, splits: dict[str, Split], prop: str,
                   z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                   device: Any) -> dict[str, float | None]:
    """Train and save the property's surrogate; returns its test scores (and val R²/MAE)."""
    z_val, y_val, _ = encoded_target(*splits["val"], prop, "val.parquet", required=False)
    surrogate = fit_surrogate(
        z_train, y_train, seed=config.seed, epochs=config.surrogate_epochs,
        hidden_dim=config.surrogate_hidden, device=device,
        validation=(z_val, y_val) if len(y_val) else None)
    test = regression_scores(y_test, surrogate.predict(z_test))
    surrogate.scores.update({f"test_{k}": v for k, v in test.items()})
    surrogate.save(config.out / "surrogates" / f"{file_stem(prop)}.pt")
    return {**test, "cv_r2_mean": None, "cv_r2_std": None,
            "val_r2": surrogate.scores["r2"], "val_mae": surrogate.scores["mae"]}


def run(config: RegressConfig, tracker: Tracker | None = None) -> RegressResult:
    """The regress stage (see the module docstring); returns the scores and the choices."""
    tracker = tracker or Tracker()
    start = time.perf_counter()
    model = load_model(local_model_dir(config.model), device=config.device)
    require_gaussian(model, "molvae regress")
    fingerprint = model_fingerprint(model)
    splits = _encode_splits(config, model)
    result = RegressResult(out=Path(config.out))
    rows: dict[str, dict[str, int]] = {}
    with tqdm(total=len(config.properties) * len(config.regressors), desc="regress") as bar:
        for prop in config.properties:
            result.scores[prop], result.best[prop], rows[prop] = _regress_property(
                config, model, fingerprint, splits, prop, bar)
            tracker.log_metrics({f"{prop}/rows/{k}": v for k, v in rows[prop].items()})
            for name, values in result.scores[prop].items():
                tracker.log_metrics({f"{prop}/{name}/{k}": v for k, v in values.items()})
    _plot_latent_space(config, splits)
    result.seconds = time.perf_counter() - start
    _write_outputs(config, model, fingerprint, splits, result, rows, tracker)
    return result


def _encode_splits(config: RegressConfig, model: SelfiesVAE) -> dict[str, Split]:
    """Every split's latent means and table (cached when ``config.cache``); a property that
    train or test lacks fails here, before any fitting."""
    cache_dir = (config.cache_dir or Path(config.out) / "cache") if config.cache else None
    splits = {name: encode_split(model, config.data, name, cache_dir, config.batch_size)
              for name in tqdm(SPLITS, desc="encode", unit="split")}
    for prop in config.properties:
        for name in ("train", "test"):
            property_values(splits[name][1], prop, f"{name}.parquet")
    return splits


def _regress_property(config: RegressConfig, model: SelfiesVAE, fingerprint: str,
                      splits: dict[str, Split], prop: str, bar: tqdm
                      ) -> tuple[dict[str, dict[str, float | None]], str, dict[str, int]]:
    """Fit and score every regressor (plus the head and the surrogate) for one property and
    save the best; returns the scores by name, the best one's name and the rows used."""
    z_all, y_all, skipped_train = encoded_target(*splits["train"], prop, "train.parquet")
    z_train, y_train = _training_rows(z_all, y_all, config, prop)
    z_test, y_test, skipped_test = encoded_target(*splits["test"], prop, "test.parquet")
    options = config.regressor_options()
    fitted = {}
    for name in config.regressors:
        bar.set_postfix_str(f"{prop}/{name}")
        fitted[name] = fit_regressor(name, z_train, y_train, z_test, y_test, options)
        bar.update()
    scores: dict[str, dict[str, float | None]] = {name: dict(f.scores)
                                                  for name, f in fitted.items()}
    head = _head_scores(model, prop, z_test, y_test)
    if head is not None:
        scores["head"] = head
    if config.surrogate:
        scores["surrogate"] = _fit_surrogate(config, splits, prop, z_train, y_train, z_test,
                                             y_test, model.device)
    chosen = max(fitted.values(), key=lambda f: f.scores["cv_r2_mean"])
    _save_best(config, model, fingerprint, prop, chosen, y_test)
    rows = {"train": len(y_train), "test": len(y_test), "skipped_train": skipped_train,
            "skipped_test": skipped_test}
    return scores, chosen.name, rows


def _save_best(config: RegressConfig, model: SelfiesVAE, fingerprint: str, prop: str,
               chosen: FittedRegressor, y_test: np.ndarray) -> None:
    """Save the property's chosen regressor, with what it was fitted on (what ``molvae
    predict`` checks it against), and plot its test predictions."""
    out = Path(config.out)
    save_regressor(chosen.estimator, out / "regressors", prop, {
        "regressor": chosen.name, "model": str(config.model), "model_hash": fingerprint,
        "latent_dim": int(model.latent_dim), "data": str(config.data),
        "n_train": chosen.n_train, "scores": chosen.scores})
    plots.predicted_vs_true(y_test, chosen.predictions, prop, chosen.name, chosen.scores,
                            out / "plots" / f"{file_stem(prop)}_pred_vs_true.png")


def _plot_latent_space(config: RegressConfig, splits: dict[str, Split]) -> None:
    """PCA of up to ``plot_points`` encodable training molecules, coloured by property."""
    mu_train, table_train = splits["train"]
    shown = subsample(len(table_train), config.plot_points, config.seed)
    encoded = np.isfinite(mu_train[shown]).all(axis=1)
    plots.latent_pca(mu_train[shown][encoded], table_train.iloc[shown][encoded],
                     config.properties, Path(config.out) / "plots" / "latent_pca.png")


def _write_outputs(config: RegressConfig, model: SelfiesVAE, fingerprint: str,
                   splits: dict[str, Split], result: RegressResult,
                   rows: dict[str, dict[str, int]], tracker: Tracker) -> None:
    """scores.json, scores.csv and report.json; the report's numbers and every output
    attached to the run."""
    out = result.out
    write_json(result.scores, out / "scores.json")
    write_table(pd.DataFrame([{"property": p, "regressor": n, **s}
                              for p, by_name in result.scores.items()
                              for n, s in by_name.items()]), out / "scores.csv")
    unencoded = {name: int((~np.isfinite(mu).all(axis=1)).sum()) for name, (mu, _) in
                 splits.items()}
    write_json({"model": str(config.model), "model_hash": fingerprint,
                "latent_dim": int(model.latent_dim), "best": result.best, "rows": rows,
                "unencodable": unencoded, "seconds": result.seconds}, out / "report.json")
    tracker.log_metrics({"seconds": result.seconds, **{f"unencodable/{k}": v
                                                       for k, v in unencoded.items()}})
    tracker.set_tags({"out": out})
    for name in ("scores.json", "scores.csv", "report.json"):
        tracker.log_artifact(out / name)
    for folder in ("regressors", "surrogates", "plots"):
        tracker.log_artifact(out / folder, artifact_path=folder)
