"""``molvae score`` from the command line: the report, the table, the plots, the MLflow run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from molvae.cli import main
from molvae.scoring import reference as reference_module
from molvae.stages import score as score_stage
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL

MOSES_KEYS = ("valid", "unique@1000", "unique@10000", "FCD/Test", "SNN/Test", "Frag/Test",
              "Scaf/Test", "IntDiv", "IntDiv2", "Filters", "logP", "SA", "QED", "weight",
              "Novelty")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def offline_filters(monkeypatch: pytest.MonkeyPatch) -> None:
    """MOSES's filter SMARTS come from the molsets wheel (a download); tests use one alert."""
    monkeypatch.setattr(score_stage, "moses_filter_smarts", lambda: ("[N+](=O)[O-]",))


def write_smiles(path: Path, smiles: list) -> Path:
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    return path


def score(generated: Path, reference: Path | str, out: Path, *extra: str) -> int:
    return main(["score", str(generated), "--reference", str(reference), "--out", str(out),
                 "--no-fcd", "--workers", "1", "--cache-dir", str(out.parent / "cache"), "-q",
                 *extra])


def read_report(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_score_cli_end_to_end(mlflow_runs, tmp_path: Path, prepared_dir: Path) -> None:
    train = pd.read_parquet(prepared_dir / "train.parquet")["smiles"].tolist()
    generated = train[:6] + [ASPIRIN, ASPIRIN, PARACETAMOL, "c1ccccc1[N+](=O)[O-]", INVALID, "",
                             "((((", "C" * 500]
    code = score(write_smiles(tmp_path / "gen.csv", generated), prepared_dir, tmp_path / "out")
    assert code == 0
    report = read_report(tmp_path / "out")
    values, notes, counts = report["metrics"], report["notes"], report["counts"]
    assert set(MOSES_KEYS) <= set(values)
    assert counts["n_input"] == len(generated) == counts["n_valid"] + counts["n_invalid"]
    assert sum(counts["invalid_reasons"].values()) == counts["n_invalid"] == 3
    assert counts["n_unique"] == counts["n_valid"] - 1  # aspirin twice
    assert values["valid"] == pytest.approx(11 / 14)
    assert values["unique@1000"] is None and "only 11 valid" in notes["unique@1000"]
    assert values["FCD/Test"] is None and "turned off" in notes["FCD/Test"]
    assert values["Novelty"] == pytest.approx(4 / 10)  # 6 of the 10 unique are training ones
    assert values["Filters"] == pytest.approx(10 / 11)  # the nitro compound fails
    assert 0 < values["SNN/Test"] < 1 and 0 < values["IntDiv"] < 1
    table = pd.read_csv(tmp_path / "out" / "molecules.csv", keep_default_na=False)
    assert len(table) == len(generated)
    assert table["smiles"].tolist() == generated
    assert table["valid"].tolist() == [True] * 10 + [False] * 3 + [True]
    assert (table.loc[~table["valid"], "reason"] != "").all()
    for name in ("properties.png", "molecules.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG)
    runs = mlflow_runs("score")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["metrics.valid"] == pytest.approx(11 / 14)
    assert run["metrics.n_invalid"] == 3
    artifacts = Path(run["artifact_uri"].removeprefix("file://"))
    assert (artifacts / "score" / "metrics.json").is_file()


def test_identical_sets_score_perfectly(tmp_path: Path, prepared_dir: Path) -> None:
    test = pd.read_parquet(prepared_dir / "test.parquet")["smiles"].tolist()
    out = tmp_path / "out"
    assert score(write_smiles(tmp_path / "gen.csv", test), prepared_dir, out, "--no-track",
                 "--table", "parquet") == 0
    values = read_report(out)["metrics"]
    for key in ("SNN/Test", "Frag/Test", "Scaf/Test", "Novelty", "valid", "unique"):
        assert values[key] == pytest.approx(1.0), key
    for key in ("logP", "SA", "QED", "weight"):
        assert values[key] == pytest.approx(0.0, abs=1e-12), key
    assert len(pd.read_parquet(out / "molecules.parquet")) == len(test)


@pytest.mark.parametrize("rows", [[], ["", INVALID, "[Xx]", None]], ids=["empty", "invalid"])
def test_nothing_valid_still_gives_a_report(tmp_path: Path, prepared_dir: Path,
                                            rows: list) -> None:
    out = tmp_path / "out"
    assert score(write_smiles(tmp_path / "gen.csv", rows), prepared_dir, out, "--no-track") == 0
    report = read_report(out)
    assert report["counts"]["n_input"] == len(rows) == report["counts"]["n_invalid"]
    undefined = [k for k in MOSES_KEYS if report["metrics"][k] is None]
    assert set(undefined) == set(MOSES_KEYS) - ({"valid"} if rows else set())
    assert all(report["notes"][k] for k in undefined)
    assert (out / "properties.png").is_file() and not (out / "molecules.png").exists()


def test_zero_byte_input_counts_as_empty(tmp_path: Path, prepared_dir: Path) -> None:
    (tmp_path / "gen.smi").write_text("")
    assert score(tmp_path / "gen.smi", prepared_dir, tmp_path / "out", "--no-track") == 0
    assert read_report(tmp_path / "out")["counts"]["n_input"] == 0


def test_reference_file_needs_train_for_novelty_and_is_cached(
        tmp_path: Path, prepared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = write_smiles(tmp_path / "ref.csv", pd.read_parquet(
        prepared_dir / "test.parquet")["smiles"].tolist())
    generated = write_smiles(tmp_path / "gen.csv", [ASPIRIN, PARACETAMOL, "CCO"])
    assert score(generated, reference, tmp_path / "a", "--no-track") == 0
    report = read_report(tmp_path / "a")
    assert report["metrics"]["Novelty"] is None and "--train" in report["notes"]["Novelty"]

    def recompute(*args: object, **kwargs: object) -> None:
        raise AssertionError("reference statistics should come from the cache")
    monkeypatch.setattr(reference_module, "_compute_reference", recompute)
    assert score(generated, reference, tmp_path / "b", "--no-track", "--train",
                 str(prepared_dir)) == 0
    second = read_report(tmp_path / "b")
    assert second["metrics"]["Novelty"] == pytest.approx(1.0)
    assert second["metrics"]["SNN/Test"] == report["metrics"]["SNN/Test"]


def test_score_cli_errors_are_one_line(tmp_path: Path, prepared_dir: Path, capsys) -> None:
    generated = write_smiles(tmp_path / "gen.csv", [ASPIRIN])
    assert score(generated, tmp_path / "missing", tmp_path / "out", "--no-track") == 2
    assert "reference not found" in capsys.readouterr().err
    assert score(generated, prepared_dir, tmp_path / "out", "--no-track", "--table", "xlsx") == 2
    assert "table must be 'csv' or 'parquet'" in capsys.readouterr().err
    assert score(generated, prepared_dir, tmp_path / "out", "--no-track", "--catalogs",
                 "NOPE") == 2
    assert "unknown RDKit FilterCatalog NOPE" in capsys.readouterr().err
