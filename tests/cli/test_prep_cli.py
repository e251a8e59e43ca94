"""``molvae prep`` from the command line, with its MLflow run."""

from pathlib import Path

import pandas as pd

from molvae.cli import main
from tests.conftest import FIXTURES


def test_prep_cli_end_to_end(mlflow_runs, tmp_path: Path) -> None:
    code = main(["prep", str(FIXTURES / "messy.csv"), "--out", "prepared", "--split", "scaffold",
                 "-q"])
    assert code == 0
    out = Path("prepared")
    for name in ("vocab.json", "rejects.csv", "report.json"):
        assert (out / name).is_file(), name
    for name in ("train", "val", "test"):  # partitioned Parquet: a folder of part files
        assert sorted((out / f"{name}.parquet").glob("part.*.parquet")), name
    runs = mlflow_runs("prep")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED"
    assert run["metrics.n_input"] == len(pd.read_csv(FIXTURES / "messy.csv"))
    assert run["params.split"] == "scaffold"
    artifacts = Path(run["artifact_uri"].removeprefix("file://"))
    assert (artifacts / "rejects.csv").is_file()


def test_prep_cli_errors_are_one_line(mlflow_store, capsys) -> None:
    assert main(["prep", "missing.csv", "--out", "x", "--no-track"]) == 2
    assert "input file not found: missing.csv" in capsys.readouterr().err
    assert main(["prep", str(FIXTURES / "molecules.csv"), "--smiles-col", "nope",
                 "--no-track"]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
