"""Latent encodings, property regressors, surrogates and the regress stage."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from threadpoolctl import threadpool_limits

from molvae.config import ConfigError, from_dict
from molvae.data.manifest import RUN_KEY, write_manifest
from molvae.latent import encode, regressors
from molvae.latent import surrogate as surrogates
from molvae.model.vae import SelfiesVAE
from molvae.stages.regress import RegressConfig
from molvae.stages.regress import run as run_regress

TINY = {"cv_folds": 3, "gp_max_train": 60, "hgb_max_iter": 20, "mlp_hidden": [16],
        "mlp_max_iter": 100, "surrogate_epochs": 20, "surrogate_hidden": 16, "device": "cpu"}


@contextmanager
def one_thread() -> Iterator[None]:
    """Test machines have few, shared cores, where parallel BLAS/OpenMP threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _single_threaded() -> Iterator[None]:
    with one_thread():
        yield


@pytest.fixture(scope="session")
def varied_dir(tmp_path_factory: pytest.TempPathFactory, molecules_csv: Path) -> Path:
    """The fixture molecules plus a random SELFIES prefix of each, prepared.

    Every SELFIES prefix is a valid molecule, so this gives drug-like fragments of all sizes:
    size-like properties then vary enough (3 to 26 heavy atoms) for 20 test molecules to
    tell a good regressor from the mean.
    """
    from molvae.data.tokens import selfies_to_smiles, smiles_to_selfies, split_selfies
    from molvae.stages.prep import PrepConfig
    from molvae.stages.prep import run as prep

    rng = np.random.default_rng(0)
    smiles = pd.read_csv(molecules_csv)["smiles"].tolist()
    prefixes = []
    for text in smiles:
        tokens = split_selfies(smiles_to_selfies(text))
        prefixes.append(selfies_to_smiles("".join(tokens[:rng.integers(3, len(tokens))])))
    folder = tmp_path_factory.mktemp("varied")
    pd.DataFrame({"smiles": smiles + prefixes}).to_csv(folder / "molecules.csv", index=False)
    prep(from_dict(PrepConfig, {"inputs": [str(folder / "molecules.csv")],
                                "out": str(folder / "prepared"), "workers": 1}))
    return folder / "prepared"


@pytest.fixture(scope="session")
def head_model_dir(tmp_path_factory: pytest.TempPathFactory, varied_dir: Path) -> Path:
    """A tiny VAE trained for a few seconds, with a joint property head for logp."""
    from molvae.training.config import TrainConfig
    from molvae.training.loop import train_model

    out = tmp_path_factory.mktemp("head_model")
    with one_thread():
        train_model(from_dict(TrainConfig, {
            "data": str(varied_dir), "out": str(out), "preset": "tiny", "epochs": 10,
            "batch_size": 16, "lr": 0.01, "lr_warmup_steps": 0, "kl_schedule": "constant",
            "beta_max": 0.01, "property_head": ["logp"], "patience": 0, "eval_samples": 0,
            "eval_molecules": 0, "device": "cpu", "seed": 0, "log_model": False}))
    return out


@pytest.fixture(scope="session")
def head_model(head_model_dir: Path) -> SelfiesVAE:
    from molvae.model.store import load_model

    return load_model(head_model_dir, device="cpu")


def _synthetic(n: int = 120, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Latent-like inputs and a smooth non-linear target of them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, dim)).astype(np.float32)
    return z, 2.0 * z[:, 0] + np.sin(z[:, 1]) + 0.05 * rng.normal(size=n)


@pytest.mark.parametrize("prop", ["heavy_atoms", "mw"])
def test_regressors_beat_the_mean_on_size_properties(head_model, varied_dir: Path,
                                                     prop: str) -> None:
    z_train, y_train, _ = encode.encoded_target(
        *encode.encode_split(head_model, varied_dir, "train"), prop, "train")
    z_test, y_test, _ = encode.encoded_target(
        *encode.encode_split(head_model, varied_dir, "test"), prop, "test")
    mean_mae = np.abs(y_test - y_train.mean()).mean()
    options = regressors.RegressorOptions(cv_folds=3, gp_max_train=80, hgb_max_iter=30,
                                      mlp_hidden=(32,), mlp_max_iter=200)
    r2 = {}
    for name in regressors.REGRESSORS:
        fitted = regressors.fit_regressor(name, z_train, y_train, z_test, y_test, options)
        r2[name] = fitted.scores["r2"]
        assert fitted.scores["r2"] > 0, (name, fitted.scores)  # better than the mean
        assert fitted.scores["mae"] < mean_mae, (name, fitted.scores, mean_mae)
        assert fitted.scores["cv_r2_mean"] > 0, (name, fitted.scores)
        assert fitted.n_train == (options.gp_max_train if name == "gp" else len(y_train))
    # an MLP on ~80 molecules with early stopping on 8 of them is noisy; the others are not
    assert max(r2.values()) > 0.4, r2


def test_encode_split_caches_by_model_and_file(head_model, varied_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    mu, table = encode.encode_split(head_model, varied_dir, "val", cache_dir=tmp_path)
    assert mu.shape == (len(table), head_model.latent_dim) and mu.dtype == np.float32
    assert list(tmp_path.glob("val-*.npy"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("encoded again although the latents are cached")

    monkeypatch.setattr(head_model, "encode", refuse)
    cached, _ = encode.encode_split(head_model, varied_dir, "val", cache_dir=tmp_path)
    np.testing.assert_array_equal(cached, mu)
    monkeypatch.undo()

    changed = type(head_model)(head_model.config, head_model.vocab)
    changed.load_state_dict(head_model.state_dict())
    with torch.no_grad():
        changed.to_mu.bias.add_(1.0)
    assert encode.model_fingerprint(changed) != encode.model_fingerprint(head_model)
    shifted, _ = encode.encode_split(changed, varied_dir, "val", cache_dir=tmp_path)
    np.testing.assert_allclose(shifted, mu + 1.0, atol=1e-5)
    assert len(list(tmp_path.glob("val-*.npy"))) == 2
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        encode.encode_split(head_model, varied_dir, "nope")


@pytest.mark.parametrize("name", regressors.REGRESSORS)
def test_saved_regressor_reloads_and_predicts_the_same(name: str, tmp_path: Path) -> None:
    z, y = _synthetic()
    options = regressors.RegressorOptions(cv_folds=2, gp_max_train=60, hgb_max_iter=10,
                                      mlp_hidden=(8,), mlp_max_iter=30)
    fitted = regressors.fit_regressor(name, z[:100], y[:100], z[100:], y[100:], options)
    regressors.save_regressor(fitted.estimator, tmp_path, "my activity", {"regressor": name})
    loaded = regressors.load_regressor(tmp_path, "my activity")
    np.testing.assert_allclose(loaded.predict(z), fitted.estimator.predict(z))
    assert regressors.regressor_info(tmp_path, "my activity") == {"property": "my activity",
                                                              "regressor": name}
    with pytest.raises(FileNotFoundError, match="no regressor for property 'qed'"):
        regressors.load_regressor(tmp_path, "qed")


def test_surrogate_learns_reloads_and_passes_gradients(tmp_path: Path) -> None:
    z, y = _synthetic(n=400)
    y[::50] = np.nan  # rows without a target are dropped, not learned as NaN
    surrogate = surrogates.fit_surrogate(z, y, seed=0, epochs=150, hidden_dim=32, patience=30)
    assert surrogate.scores["r2"] > 0.8, surrogate.scores
    inputs = torch.tensor(z[:5], requires_grad=True)
    predictions = surrogate(inputs)
    assert predictions.shape == (5,)
    predictions.sum().backward()
    assert torch.isfinite(inputs.grad).all() and inputs.grad[:, 0].abs().min() > 0.5

    path = surrogate.save(tmp_path / "surrogates" / "activity.pt")
    assert set(torch.load(path, weights_only=True)) == {"config", "scores", "state_dict"}
    loaded = surrogates.load_surrogate(tmp_path, "activity")
    np.testing.assert_allclose(loaded.predict(z), surrogate.predict(z), rtol=1e-6)
    assert loaded.scores == surrogate.scores
    again = surrogates.fit_surrogate(z, y, seed=0, epochs=150, hidden_dim=32, patience=30)
    np.testing.assert_allclose(again.predict(z), surrogate.predict(z), rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="no surrogate for property 'qed'"):
        surrogates.load_surrogate(tmp_path, "qed")


def test_property_columns_are_checked() -> None:
    table = pd.DataFrame({"smiles": ["C", "CC"], "qed": [0.4, np.nan], "empty": [np.nan] * 2,
                          "label": ["a", "b"]})
    np.testing.assert_array_equal(encode.property_values(table, "qed"), [0.4, np.nan])
    with pytest.raises(ConfigError, match="property 'logp' is not a column.*qed"):
        encode.property_values(table, "logp")
    with pytest.raises(ConfigError, match="property 'empty' .* no values"):
        encode.property_values(table, "empty")
    with pytest.raises(ConfigError, match="property 'label' .* not numeric"):
        encode.property_values(table, "label")


@pytest.mark.parametrize("options, key", [
    ({"regressors": ["ridge", "svm"]}, "regressors"), ({"cv_folds": 1}, "cv_folds"),
    ({"properties": ["qed", "qed"]}, "properties"), ({"gp_kernel": "linear"}, "gp_kernel"),
    ({"gp_max_train": 3}, "gp_max_train"),
])
def test_bad_config_names_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        from_dict(RegressConfig, {"model": "m", "data": "d", **options})


def _with_activity(prepared: Path, folder: Path) -> tuple[Path, int]:
    """A copy of the prepared data with a user column ``activity`` (some rows unmeasured)."""
    shutil.copytree(prepared, folder)
    missing = 0
    for split in ("train", "val", "test"):
        table = pd.read_parquet(folder / f"{split}.parquet")
        activity = 0.5 * table["heavy_atoms"] - table["logp"]
        if split == "train":
            activity.iloc[::10] = np.nan
            missing = int(activity.isna().sum())
        shutil.rmtree(folder / f"{split}.parquet")
        table.assign(activity=activity, text=["x"] * len(table)).to_parquet(
            folder / f"{split}.parquet")
    write_manifest(folder, json.loads((folder / "manifest.json").read_text())[RUN_KEY])
    return folder, missing


def test_stage_with_a_user_column_and_the_joint_head(head_model_dir: Path, head_model,
                                                     varied_dir: Path, tmp_path: Path) -> None:
    data, missing = _with_activity(varied_dir, tmp_path / "prepared")
    config = from_dict(RegressConfig, {
        "model": str(head_model_dir), "data": str(data), "out": str(tmp_path / "out"),
        "properties": ["activity", "logp"], "regressors": ["ridge", "mlp"], **TINY})
    result = run_regress(config)

    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores == json.loads(json.dumps(result.scores))
    assert set(scores["activity"]) == {"ridge", "mlp", "surrogate"}  # no head for activity
    assert set(scores["logp"]) == {"ridge", "mlp", "surrogate", "head"}  # the model's own head
    for key in ("r2", "mae", "rmse", "spearman", "cv_r2_mean", "cv_r2_std"):
        assert np.isfinite(scores["activity"]["ridge"][key]), key
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rows"]["activity"]["skipped_train"] == missing
    assert report["rows"]["logp"]["skipped_train"] == 0
    assert result.best["activity"] == max(("ridge", "mlp"),
                                          key=lambda n: scores["activity"][n]["cv_r2_mean"])

    mu_test, table_test = encode.encode_split(head_model, data, "test")
    info = regressors.regressor_info(tmp_path / "out", "activity")
    assert info["regressor"] == result.best["activity"] and info["latent_dim"] == mu_test.shape[1]
    predicted = regressors.load_regressor(tmp_path / "out", "activity").predict(mu_test)
    assert regressors.regression_scores(table_test["activity"].to_numpy(), predicted)["r2"] == \
        pytest.approx(scores["activity"][result.best["activity"]]["r2"])
    surrogate = surrogates.load_surrogate(tmp_path / "out", "activity")
    assert surrogate.scores["test_r2"] == pytest.approx(scores["activity"]["surrogate"]["r2"])
    for name in ("activity_pred_vs_true.png", "logp_pred_vs_true.png", "latent_pca.png"):
        assert (tmp_path / "out" / "plots" / name).stat().st_size > 1000, name
    assert "activity" in result.summary()

    for bad, message in (("nope", "property 'nope' is not a column"),
                         ("text", "property 'text' .* not numeric")):
        config.properties = [bad]
        with pytest.raises(ConfigError, match=message):
            run_regress(config)


def test_regression_scores_are_nan_where_undefined() -> None:
    one = regressors.regression_scores(np.array([1.0]), np.array([2.0]))
    assert math.isnan(one["r2"]) and one["mae"] == 1.0
    flat = regressors.regression_scores(np.array([1.0, 1.0, 1.0]), np.array([0.5, 1.0, 1.5]))
    assert math.isnan(flat["spearman"])
    good = regressors.regression_scores(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    assert good["r2"] == 1.0 and good["spearman"] == pytest.approx(1.0)
