"""Molecule sources: SMILES column detection, files of every supported kind, clear errors."""

from pathlib import Path

import pandas as pd
import pytest

from molvae.config import ConfigError
from molvae.data.sources import find_smiles_column, read_moses, read_source


def test_the_smiles_column_is_found_by_name_or_by_content() -> None:
    assert find_smiles_column(pd.DataFrame({"ID": [1], "SMILES": ["CCO"]}), None, "t") == "SMILES"
    by_content = pd.DataFrame({"id": ["a", "b", "c"], "structure_text": ["CCO", "CCN", "c1ccccc1"]})
    assert find_smiles_column(by_content, None, "t") == "structure_text"
    with pytest.raises(ConfigError, match="no SMILES column found"):
        find_smiles_column(pd.DataFrame({"id": ["a", "b"], "x": ["1", "2"]}), None, "t")
    with pytest.raises(ConfigError, match="no column 'mol'"):
        find_smiles_column(by_content, "mol", "t")


def test_read_source_puts_smiles_first_and_keeps_user_columns(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("activity,canonical_smiles\n1.5,CCO\n")
    table = read_source(str(tmp_path / "in.csv"))
    assert list(table.columns) == ["smiles", "activity"]
    assert table.iloc[0].tolist() == ["CCO", "1.5"]


def test_sdf_records_become_rows_with_their_tags(tmp_path: Path) -> None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles("CCO")
    mol.SetProp("_Name", "ethanol")
    mol.SetProp("pIC50", "6.1")
    with Chem.SDWriter(str(tmp_path / "in.sdf")) as writer:
        writer.write(mol)
    table = read_source(str(tmp_path / "in.sdf"))
    assert table.loc[0, "smiles"] == "CCO" and table.loc[0, "name"] == "ethanol"
    assert float(table.loc[0, "pIC50"]) == pytest.approx(6.1)


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="input file not found"):
        read_source(str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="unknown MOSES split"):
        read_moses("validation")
