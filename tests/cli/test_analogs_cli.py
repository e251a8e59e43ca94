"""``molvae analogs`` and ``molvae.analogs``: molecules decoded around given ones, inside a
similarity band, on the shipped model (a real latent space, so real analogs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import molvae
from molvae import chem
from molvae.cli import main
from molvae.model.analogs import Spread
from tests.conftest import ASPIRIN, INVALID, PARACETAMOL


def test_analogs_fall_in_the_band_are_new_and_carry_their_parent(tmp_path: Path) -> None:
    parents = tmp_path / "parents.csv"
    pd.DataFrame({"smiles": [ASPIRIN, INVALID, PARACETAMOL]}).to_csv(parents, index=False)
    out = tmp_path / "analogs"
    assert main(["analogs", str(parents), "--model", "moses", "-n", "5", "--similarity",
                 "0.3:0.7", "--out", str(out), "--no-track", "-q", "--device", "cpu",
                 "--table-format", "sdf"]) == 0
    table = chem.read_sdf(out / "analogs.sdf")
    summary = pd.read_csv(out / "parents.csv", keep_default_na=False)
    assert list(summary["reason"] != "") == [False, True, False]
    assert summary.loc[[0, 2], "analogs"].min() >= 3  # the band is reachable for both
    kept = summary.loc[[0, 2]]  # the counts behind validity and uniqueness
    assert (kept["decoded"] >= kept["valid"]).all() and (kept["valid"] >= 1).all()
    assert (kept["distinct"] >= kept["analogs"]).all()
    assert summary.loc[1, ["decoded", "valid", "distinct"]].tolist() == [0, 0, 0]
    for _, row in table.iterrows():
        parent = chem.canonical_smiles([ASPIRIN, INVALID, PARACETAMOL][int(row["parent_index"])])
        assert row["smiles"] != parent
        assert 0.3 <= chem.similarity(parent, row["smiles"]) <= 0.7
        assert float(row["similarity"]) == pytest.approx(chem.similarity(parent, row["smiles"]))
        assert float(row["mw"]) > 0
    assert table.groupby("parent_index")["smiles"].nunique().equals(
        table.groupby("parent_index").size())
    assert (out / "grid.png").stat().st_size > 1000


def test_api_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = molvae.analogs("moses", ASPIRIN, n=3, similarity=(0.5, 1.0), seed=1)
    assert set(table["parent_index"]) == {0} and len(table) <= 3
    assert table.attrs["parents"]["analogs"].iloc[0] == len(table)
    again = molvae.analogs("moses", ASPIRIN, n=3, similarity=(0.5, 1.0), seed=1)
    assert table.equals(again)  # seeded
    assert main(["analogs", ASPIRIN, "--model", "moses", "--similarity", "0.8:0.2",
                 "--no-track", "-q"]) == 2
    assert "similarity must satisfy 0 <= LOW < HIGH <= 1" in capsys.readouterr().err
    assert main(["analogs", "not_a_molecule", "--model", "moses", "--no-track", "-q"]) == 2
    assert "neither a file nor a valid SMILES" in capsys.readouterr().err


def test_spread_bisects_toward_the_band() -> None:
    spread = Spread()
    spread.update(0.95, 0.4, 0.8)  # too similar: wider
    assert spread.value == 4.0
    spread.update(0.1, 0.4, 0.8)  # overshot: narrower by a smaller factor
    assert spread.value == 2.0
    spread.update(0.6, 0.4, 0.8)  # inside: unchanged
    assert spread.value == 2.0
