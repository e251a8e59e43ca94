"""docs/extending.md stays true: its stage, objective and optimizer run as the page says.

Each code block is executed as written. The registry entries are put into the registries for
the test only (``monkeypatch`` restores them), as the page's one-line edits of
``molvae/stages/registry.py`` and ``molvae/optim/registry.py`` would.
"""

import json
import re
import shutil
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

import molvae
from molvae.cli import main
from molvae.optim.registry import METHODS, Method
from molvae.stages.registry import STAGES, Stage

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "extending.md"


def blocks(section: str) -> list[str]:
    """The ```python blocks of the page's section headed ``## {section}``."""
    text = PAGE.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def module(name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """``source`` executed as module ``name`` (in sys.modules, so dataclass annotations and
    ``importlib.import_module`` resolve it), removed again after the test."""
    made = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, made)
    exec(compile(source, f"{PAGE}:{name}", "exec"), made.__dict__)
    return made


def entry(line: str, namespace: dict) -> object:
    """A registry entry as the page writes it (an indented call with a trailing comma)."""
    return eval(line.strip().rstrip(","), namespace)


@pytest.fixture
def model_here(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny model copied to ./model, the folder name the page's examples use."""
    shutil.copytree(tiny_model, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    return tmp_path / "model"


def test_the_optimizer_recipe_registers_and_runs(model_here: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, line = blocks("Add an optimizer")
    jitter = module("molvae_docs_jitter", code, monkeypatch)
    method = entry(line, {"Method": Method, **vars(jitter)})
    monkeypatch.setitem(METHODS, method.name, method)
    best = molvae.optimize("model", "qed", method="jitter", jitter_step=0.5, budget=24,
                           batch_size=8, grid_size=0, out="run", device="cpu")
    metrics = best.attrs["metrics"]
    assert metrics["method"] == "jitter" and 0 < metrics["n_calls"] <= 24
    assert best["score"].notna().any()
    recorded = json.loads((model_here.parent / "run" / "summary.json").read_text())
    assert recorded["config"]["jitter_step"] == 0.5
    monkeypatch.setattr(sys, "argv", ["molvae"])
    with pytest.raises(SystemExit):
        main(["optimize", "--help"])
    assert "--jitter-step" in capsys.readouterr().out


def test_the_objective_recipe_runs(model_here: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, usage = blocks("Add an objective")
    objective = module("molvae_docs_objective", code, monkeypatch)
    namespace = {"HeavyAtomsNear": objective.HeavyAtomsNear}
    exec(compile(usage, f"{PAGE}:usage", "exec"), namespace)
    best = namespace["best"]
    assert best.attrs["metrics"]["objective"] == "heavy_atoms_near:20"
    assert best["score"].between(0, 1).any()
    assert objective.HeavyAtomsNear(20).score("CCO", {"heavy_atoms": 20.0}) == 1.0


def test_the_stage_recipe_is_a_command(tiny_model: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, line = blocks("Add a stage")
    module("molvae.stages.reconstruct", code, monkeypatch)
    stage = entry(line, {"Stage": Stage})
    monkeypatch.setitem(STAGES, stage.name, stage)
    monkeypatch.setattr(sys, "argv", ["molvae"])
    out = tmp_path / "reconstruct.csv"
    assert main(["reconstruct", "CCO", "CC(=O)Oc1ccccc1C(=O)O", "--model", str(tiny_model),
                 "--out", str(out), "--device", "cpu", "--no-track", "-q"]) == 0
    assert "of the molecules reconstructed" in capsys.readouterr().out
    table = pd.read_csv(out)
    assert table.columns.tolist() == ["input", "reconstruction", "same"] and len(table) == 2
