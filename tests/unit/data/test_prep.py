"""The prep stage: conservation of molecules, splits, extra columns, vocabulary."""

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from molvae import chem
from molvae.cli import main
from molvae.config import ConfigError, from_dict
from molvae.data.tokens import Vocab
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep
from tests.conftest import FIXTURES


def run_prep(tmp_path: Path, **options) -> Path:
    out = tmp_path / "prepared"
    prep(from_dict(PrepConfig, {"out": str(out), "workers": 1, **options}))
    return out


def read_splits(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(out / f"{s}.parquet").assign(split=s)
                      for s in ("train", "val", "test")], ignore_index=True)


def test_every_messy_row_ends_in_exactly_one_place(tmp_path: Path) -> None:
    raw = pd.read_csv(FIXTURES / "messy.csv", keep_default_na=False)
    out = run_prep(tmp_path, inputs=[str(FIXTURES / "messy.csv")])
    kept, rejects = read_splits(out), pd.read_csv(out / "rejects.csv")
    dupes = pd.read_csv(out / "duplicates.csv")
    rows = sorted([*kept["row"], *rejects["row"], *dupes["row"]])
    assert rows == list(range(1, len(raw) + 1))
    reasons = dict(zip(rejects["row"], rejects["reason"]))
    by_name = dict(zip(raw["name"], range(1, len(raw) + 1)))
    assert reasons[by_name["empty"]] == chem.RejectReason.EMPTY
    assert reasons[by_name["tin"]].startswith(chem.RejectReason.ELEMENT)
    assert reasons[by_name["pentavalent_carbon"]].startswith(chem.RejectReason.VALENCE)
    assert reasons[by_name["bad_aromatic"]].startswith(chem.RejectReason.KEKULIZE)
    assert reasons[by_name["long_chain"]].startswith(chem.RejectReason.TOO_LARGE)
    assert dupes.iloc[0]["duplicate_of_row"] == by_name["aspirin"]
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["input"] == len(raw)
    assert report["counts"]["kept"] == len(kept)


def test_kept_rows_carry_properties_selfies_and_user_columns(tmp_path: Path) -> None:
    out = run_prep(tmp_path, inputs=[str(FIXTURES / "messy.csv")])
    kept = read_splits(out).set_index("name")
    assert kept.loc["sodium_benzoate", "smiles"] == "O=C(O)c1ccccc1"
    assert kept.loc["aspirin", "activity"] == pytest.approx(5.1)
    assert pd.api.types.is_float_dtype(kept["activity"])
    for column in ("selfies", "n_tokens", "source", "row", *chem.PROPERTY_NAMES):
        assert kept[column].notna().all(), column
    vocab = Vocab.load(out / "vocab.json")
    train = pd.read_parquet(out / "train.parquet")
    for smiles, selfies in zip(train["smiles"], train["selfies"]):
        assert vocab.to_smiles(vocab.encode(selfies)) == smiles


def test_no_stereo_option(tmp_path: Path) -> None:
    out = run_prep(tmp_path, inputs=[str(FIXTURES / "messy.csv")], stereo=False)
    assert "CC(N)C(=O)O" in set(read_splits(out)["smiles"])


@pytest.mark.parametrize("split", ["random", "scaffold"])
def test_splits_are_disjoint_and_sized(tmp_path: Path, split: str) -> None:
    out = run_prep(tmp_path, inputs=[str(FIXTURES / "molecules.csv")], split=split,
                   val_fraction=0.1, test_fraction=0.1)
    kept = read_splits(out)
    assert len(kept) == 100 and kept["smiles"].is_unique
    assert (kept["split"] == "train").sum() >= 70
    if split == "scaffold":
        scaffolds = kept.assign(scaffold=kept["smiles"].map(chem.scaffold))
        owners = scaffolds.groupby("scaffold")["split"].nunique()
        assert (owners == 1).all(), "a scaffold appears in two splits"


def test_parallel_matches_serial(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "molecules.csv")]
    serial = read_splits(run_prep(tmp_path / "a", inputs=inputs, workers=1))
    parallel = read_splits(run_prep(tmp_path / "b", inputs=inputs, workers=2, chunk_size=30))
    pd.testing.assert_frame_equal(serial, parallel)


def test_bad_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'splt'"):
        from_dict(PrepConfig, {"inputs": ["x.csv"], "splt": "random"}, where="prep")
    with pytest.raises(ConfigError, match="split must be"):
        from_dict(PrepConfig, {"inputs": ["x.csv"], "split": "cluster"})
    with pytest.raises(ConfigError, match="max_tokens"):
        from_dict(PrepConfig, {"inputs": ["x.csv"], "max_tokens": "many"})


def test_missing_file_and_column_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.csv"):
        run_prep(tmp_path, inputs=[str(tmp_path / "nothere.csv")])
    with pytest.raises(ConfigError, match="no column 'structure'"):
        run_prep(tmp_path, inputs=[str(FIXTURES / "molecules.csv")], smiles_col="structure")


def test_reads_smi_and_sdf(tmp_path: Path) -> None:
    smi = tmp_path / "in.smi"
    smi.write_text("CCO ethanol\nc1ccccc1O phenol\nXX bad\n")
    from rdkit import Chem

    sdf = tmp_path / "in.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for s in ("CCN", "CCCl"):
            writer.write(Chem.MolFromSmiles(s))
    out = run_prep(tmp_path, inputs=[str(smi), str(sdf)], val_fraction=0, test_fraction=0)
    kept = read_splits(out)
    assert set(kept["smiles"]) == {"CCO", "Oc1ccccc1", "CCN", "CCCl"}
    assert len(pd.read_csv(out / "rejects.csv")) == 1


def test_split_is_the_same_however_the_input_is_cut_or_ordered(tmp_path: Path) -> None:
    table = pd.read_csv(FIXTURES / "molecules.csv")
    shuffled = tmp_path / "shuffled.csv"
    table.sample(frac=1.0, random_state=3).to_csv(shuffled, index=False)
    whole = read_splits(run_prep(tmp_path / "a", inputs=[str(FIXTURES / "molecules.csv")]))
    cut = read_splits(run_prep(tmp_path / "b", inputs=[str(shuffled)], chunk_size=9))
    assert dict(zip(whole["smiles"], whole["split"])) == dict(zip(cut["smiles"], cut["split"]))
    assert (whole["split"] == "val").sum() == 10 and (whole["split"] == "test").sum() == 10


def test_user_columns_get_one_type_across_pieces(tmp_path: Path) -> None:
    smiles = pd.read_csv(FIXTURES / "molecules.csv")["smiles"].head(30)
    table = pd.DataFrame({"smiles": smiles,
                          "count": [str(i) for i in range(30)],
                          "activity": [str(i) for i in range(25)] + ["", "", "1.5", "2", "3"],
                          "label": ["7"] * 20 + ["active"] + ["8"] * 9})
    path = tmp_path / "in.csv"
    table.to_csv(path, index=False)
    kept = read_splits(run_prep(tmp_path, inputs=[str(path)], chunk_size=10))
    assert pd.api.types.is_integer_dtype(kept["count"])
    assert pd.api.types.is_float_dtype(kept["activity"]) and kept["activity"].isna().sum() == 2
    assert pd.api.types.is_string_dtype(kept["label"]) or kept["label"].dtype == object
    assert set(kept["label"]) == {"7", "active", "8"}


def test_a_folder_of_parquet_files_is_one_input(tmp_path: Path) -> None:
    table = pd.read_csv(FIXTURES / "molecules.csv")
    folder = tmp_path / "in.parquet"
    folder.mkdir()
    for i, start in enumerate(range(0, len(table), 40)):
        table.iloc[start:start + 40].to_parquet(folder / f"part-{i}.parquet")
    out = run_prep(tmp_path, inputs=[str(folder)], chunk_size=25)
    kept = read_splits(out)
    assert len(kept) == 100 and sorted(kept["row"]) == list(range(1, 101))
    assert json.loads((out / "report.json").read_text())["counts"]["input"] == 100


def test_only_the_properties_asked_for_are_computed(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "molecules.csv")]
    some = read_splits(run_prep(tmp_path / "a", inputs=inputs, properties=["mw", "qed"]))
    assert {"mw", "qed"} <= set(some.columns) and "sa" not in some.columns
    full = read_splits(run_prep(tmp_path / "b", inputs=inputs)).set_index("smiles")
    pd.testing.assert_series_equal(some.set_index("smiles")["qed"], full.loc[some["smiles"],
                                   "qed"], check_names=False)
    none = read_splits(run_prep(tmp_path / "c", inputs=inputs, properties=["none"]))
    assert not set(chem.PROPERTY_NAMES) & set(none.columns)
    with pytest.raises(ConfigError, match="properties: unknown colour"):
        from_dict(PrepConfig, {"inputs": inputs, "properties": ["colour"]})


def test_report_names_the_engine(tmp_path: Path) -> None:
    inputs = [str(FIXTURES / "molecules.csv")]
    here = json.loads((run_prep(tmp_path / "a", inputs=inputs) / "report.json").read_text())
    assert here["engine"] == "this process"
    there = run_prep(tmp_path / "b", inputs=inputs, workers=2, chunk_size=40)
    assert json.loads((there / "report.json").read_text())["engine"] == "dask (local cluster)"


@pytest.mark.parametrize("order", [["qed", "logp", "sa"], ["sa", "mw"], ["plogp", "hbd", "mw"],
                                   ["heavy_atoms", "tpsa", "qed", "rings"]])
def test_each_property_column_holds_its_own_rdkit_value(tmp_path: Path, order: list[str]) -> None:
    from rdkit import Chem
    from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors
    from rdkit.Contrib.SA_Score import sascorer

    rdkit = {"qed": QED.qed, "logp": Crippen.MolLogP, "sa": sascorer.calculateScore,
             "mw": Descriptors.MolWt, "hbd": rdMolDescriptors.CalcNumHBD,
             "tpsa": rdMolDescriptors.CalcTPSA, "rings": rdMolDescriptors.CalcNumRings,
             "heavy_atoms": lambda m: m.GetNumHeavyAtoms(),
             "plogp": lambda m: chem.penalized_logp(m)}
    rows = read_splits(run_prep(tmp_path, inputs=[str(FIXTURES / "molecules.csv")],
                                properties=order)).head(20)
    assert [c for c in rows.columns if c in chem.PROPERTY_NAMES] == order
    for _, row in rows.iterrows():
        mol = Chem.MolFromSmiles(row["smiles"])
        for name in order:
            assert row[name] == pytest.approx(rdkit[name](mol), rel=1e-6, abs=1e-6), name


def test_a_killed_prep_resumes_with_the_pieces_it_finished(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """``kill`` (SIGTERM) in its third piece unwinds `molvae prep` like Ctrl-C (exit 130) and
    keeps the two pieces it finished beside OUT; the rerun standardizes only the rest, writes
    what a prep never stopped writes, and cleans up."""
    import molvae.data.prep as pieces

    source = str(FIXTURES / "messy.csv")
    clean = read_splits(run_prep(tmp_path / "clean", inputs=[source], chunk_size=5))
    real, standardized = pieces.standardize_partition, []

    def killed_in_the_third(raw: pd.DataFrame, rules: object) -> tuple:
        if len(standardized) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        standardized.append(raw["row"].iloc[0])
        return real(raw, rules)

    monkeypatch.setattr(pieces, "standardize_partition", killed_in_the_third)
    command = ["prep", source, "--out", str(tmp_path / "prepared"), "--workers", "1",
               "--chunk-size", "5", "--no-track", "-q"]
    assert main(command) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "prepared").exists()
    assert len(list(tmp_path.glob(".prepared.prep-*/done/part-*.json"))) == 2

    standardized.clear()
    monkeypatch.setattr(pieces, "standardize_partition",
                        lambda raw, rules: (standardized.append(raw["row"].iloc[0]),
                                            real(raw, rules))[1])
    assert main(command) == 0
    assert standardized == [11, 16]
    pd.testing.assert_frame_equal(read_splits(tmp_path / "prepared"), clean)
    assert not list(tmp_path.glob(".prepared.prep-*"))
