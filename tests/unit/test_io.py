"""Atomic writes and the table formats users already have."""

import gzip
from pathlib import Path

import pandas as pd
import pytest

from molvae.io import atomic_path, read_table, write_json, write_table


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_json({"a": 1}, tmp_path / "x.json")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text().strip().startswith("{") and '"a": 1' in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_tables_round_trip_as_csv_and_parquet(tmp_path: Path) -> None:
    table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1"], "value": [1.5, 2.0]})
    for name in ("t.csv", "t.parquet"):
        back = read_table(write_table(table, tmp_path / name))
        assert back["smiles"].tolist() == ["CCO", "c1ccccc1"]
    assert read_table(tmp_path / "t.parquet")["value"].tolist() == [1.5, 2.0]


def test_smi_tsv_and_gzipped_text_are_read(tmp_path: Path) -> None:
    (tmp_path / "a.smi").write_text("CCO ethanol\nc1ccccc1\n")
    assert read_table(tmp_path / "a.smi").to_dict("list") == {
        "smiles": ["CCO", "c1ccccc1"], "name": ["ethanol", ""]}
    (tmp_path / "a.tsv").write_text("smiles\tid\nCCN\t7\n")
    assert read_table(tmp_path / "a.tsv")["id"].tolist() == ["7"]
    with gzip.open(tmp_path / "a.csv.gz", "wt") as handle:
        handle.write("smiles\nCCCl\n")
    assert read_table(tmp_path / "a.csv.gz")["smiles"].tolist() == ["CCCl"]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="file not found"):
        read_table(tmp_path / "nope.csv")


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    path = write_json({"a": 1}, tmp_path / "mode.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
