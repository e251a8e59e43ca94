"""The Python API (``import molvae``): fast to import, versioned, and the README example runs."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import molvae
from molvae.cli import main
from molvae.model.ops import interpolate
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

ROOT = Path(__file__).resolve().parents[2]


def readme_api_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_import_is_light_and_versioned() -> None:
    code = ("import sys, molvae; print(molvae.__version__, 'torch' in sys.modules, "
            "'rdkit' in sys.modules, 'mlflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    pyproject = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert done.stdout.split() == [pyproject.group(1), "False", "False", "False"]
    assert molvae.__version__ == pyproject.group(1)
    assert set(molvae.API) <= set(dir(molvae))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        molvae.nope  # noqa: B018


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"molvae {molvae.__version__}"


def test_readme_example_runs(tiny_model: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(tiny_model, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_api_example(), "README.md", "exec"), namespace)
    assert len(namespace["z"]) == 2 and namespace["best"]["score"].notna().any()
    assert namespace["best"].attrs["metrics"]["n_calls"] <= 20


def test_api_functions_agree_with_the_model(tiny_model: Path) -> None:
    model = molvae.load(str(tiny_model), device="cpu")
    z = molvae.encode(model, [ASPIRIN, INVALID])
    assert z.shape == (2, model.latent_dim) and np.isnan(z[1]).all()
    assert molvae.decode(model, z[:1]) == model.decode(z[:1])
    assert molvae.reconstruct(str(tiny_model), [ASPIRIN]) == model.reconstruct([ASPIRIN])
    assert molvae.sample(model, 3, seed=1) == model.sample(3, seed=1)
    line = molvae.interpolate(model, ASPIRIN, PARACETAMOL, steps=3, method="linear")
    assert line == interpolate(model, ASPIRIN, PARACETAMOL, 3, "linear")["smiles"].tolist()
    terms = molvae.elbo(model, [ASPIRIN, INVALID])
    assert terms["neg_elbo"].notna().tolist() == [True, False]
    with pytest.raises(ValueError, match="no property head"):
        molvae.predict(model, [ASPIRIN])


def test_optimize_takes_a_python_callable_and_survives_its_errors(tiny_model: Path) -> None:
    calls: list[str] = []

    def picky(smiles: str) -> float:
        calls.append(smiles)
        if len(calls) % 2:
            raise RuntimeError("oracle down")
        return float(len(smiles))

    table = molvae.optimize(str(tiny_model), objective=picky, budget=6, method="random",
                            device="cpu", seed=3)
    scored = table.dropna(subset=["score"])
    assert len(calls) == 6 and len(table) == 6
    assert table["score"].isna().sum() == 3
    assert sorted(scored["score"]) == sorted(float(len(s)) for s in calls[1::2])
    assert table.attrs["metrics"]["objective"] == "picky"
    by_spec = molvae.optimize(str(tiny_model), objective="qed", budget=4, method="random",
                              device="cpu")
    assert by_spec["score"].between(0, 1).all()
