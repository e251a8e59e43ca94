"""The predict stage: properties of new molecules, from the latent space of a trained model.

Two sources of predictions: the regressors saved by ``molvae regress`` (``--regress OUT``; one
per property, each trained on this model's latent means) or, without ``--regress``, the
model's joint property head (``train --property-head``). The molecules are encoded to their
posterior mean, and each property is predicted from it. A regressor saved for a different
model (its ``model_hash``) is an error: its latent space is not this one.

Output columns: smiles, reason, ``pred_{property}`` per property, then the input columns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from molvae.config import ConfigError, batch_size_option, device_option, model_option, option
from molvae.data.tokens import tokenize
from molvae.latent.encode import model_fingerprint
from molvae.latent.regressors import load_regressor, regressor_info
from molvae.model.store import load_model
from molvae.model.vae import SelfiesVAE
from molvae.model.vq import require_gaussian
from molvae.stages.molecules import (
    check_table_path,
    read_molecules,
    with_inputs,
    write_molecules,
)
from molvae.tracking import Tracker, local_model_dir


@dataclass
class PredictConfig:
    """Options of ``molvae predict``."""

    inputs: list[str] = option(help="molecule files (CSV/TSV/Parquet/SMI/SDF) or SMILES",
                               positional=True)
    model: str = model_option()
    regress: Path | None = option(None, help="the --out folder of `molvae regress` (default: "
                                  "the model's property head)")
    properties: list[str] = option([], help="properties to predict (default: all available)")
    out: Path = option(Path("predictions.csv"), help="output table: .csv, .csv.gz, .tsv, "
                       ".parquet or .sdf")
    smiles_col: str | None = option(None, help="SMILES column of the input tables")
    batch_size: int = batch_size_option(512)
    device: str = device_option()

    def validate(self) -> None:
        if self.regress is not None and not self.regress.is_dir():
            raise ConfigError(f"regress: folder not found: {self.regress}")
        check_table_path(self.out)


@dataclass
class PredictResult:
    """Where the predictions went."""

    out: Path
    n: int
    n_predicted: int
    properties: list[str]
    source: str

    def summary(self) -> str:
        return (f"predicted {', '.join(self.properties)} for {self.n_predicted} of {self.n} "
                f"molecules ({self.source}) into {self.out}")


def available_properties(regress: Path) -> list[str]:
    """Properties with a saved regressor in a regress folder (from the metadata files)."""
    folder = regress / "regressors" if (regress / "regressors").is_dir() else regress
    return sorted(regressor_info(folder, p.stem)["property"] for p in folder.glob("*.skops"))


def predict_table(model: SelfiesVAE, mu: np.ndarray, regress: Path | None,
                  properties: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Predictions per property from ``mu`` [N, d] (NaN rows stay NaN), and the properties."""
    ok = np.isfinite(mu).all(axis=1)
    predictions: dict[str, np.ndarray] = {}
    if regress is None:
        names = list(model.config.property_names)
        if not names:
            raise ConfigError("this model has no property head; give --regress (the --out of "
                              "`molvae regress`)")
        unknown = sorted(set(properties) - set(names))
        if unknown:
            raise ConfigError(f"the property head predicts {', '.join(names)}, not "
                              f"{', '.join(unknown)}")
        values = np.full((len(mu), len(names)), np.nan)
        if ok.any():
            values[ok] = model.predict_properties(mu[ok])
        chosen = properties or names
        return {p: values[:, names.index(p)] for p in chosen}, chosen
    chosen = properties or available_properties(regress)
    fingerprint = model_fingerprint(model)
    for prop in chosen:
        estimator = load_regressor(regress, prop)
        info = regressor_info(regress / "regressors" if (regress / "regressors").is_dir()
                              else regress, prop)
        if info.get("model_hash") not in (None, fingerprint):
            raise ConfigError(f"the {prop} regressor in {regress} was fitted on another "
                              f"model's latent space ({info.get('model')})")
        predicted = np.full(len(mu), np.nan)
        if ok.any():
            predicted[ok] = estimator.predict(mu[ok].astype(np.float64))
        predictions[prop] = predicted
    return predictions, chosen


def run(config: PredictConfig, tracker: Tracker | None = None) -> PredictResult:
    """Encode the molecules, predict each property, write the table."""
    tracker = tracker or Tracker()
    started = time.perf_counter()
    molecules = read_molecules(config.inputs, config.smiles_col)
    model = load_model(local_model_dir(config.model), config.device)
    require_gaussian(model, "molvae predict")
    raw = molecules["input"].tolist()
    read = tokenize(model.vocab, raw)
    canonical, reasons = read.smiles, read.reasons
    mu, _ = model.encode([s or "" for s in canonical], config.batch_size)
    predictions, names = predict_table(model, mu, config.regress, config.properties)
    table = pd.DataFrame({"smiles": canonical, "reason": reasons,
                          **{f"pred_{p}": v for p, v in predictions.items()}})
    table = with_inputs(table, molecules)
    write_molecules(table, config.out)
    n_predicted = int(np.isfinite(mu).all(axis=1).sum())
    source = "regressors" if config.regress is not None else "property head"
    tracker.log_metrics({"n": len(table), "n_predicted": n_predicted,
                         "seconds": time.perf_counter() - started})
    tracker.set_tags({"source": source})
    tracker.log_artifact(config.out)
    return PredictResult(Path(config.out), len(table), n_predicted, names, source)
