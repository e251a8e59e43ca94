"""Hostile input: huge SMILES, half-read SMILES, blank lines, corrupt files, nonsense options.

Each must end as a counted reject with a reason a person reads, or as one ``error:`` line
naming the file or option, never as a crash, a stall or a silently different molecule.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from molvae import chem
from molvae.cli import main
from molvae.data.tokens import tokenize
from molvae.io import read_table
from molvae.model.store import MODEL_FILE, load_model
from molvae.scoring.features import parse_set
from molvae.training.checkpoint import CHECKPOINT_FILE, load_checkpoint
from tests.conftest import ASPIRIN, PARACETAMOL

TOO_LONG = "C" * (chem.SMILES_CHAR_LIMIT + 500)  # RDKit copes; a few times this it crashes
TOO_BIG = "C" * (2 * chem.HEAVY_ATOM_LIMIT)  # short enough, too many atoms to describe
# 9 data lines: two blank, a half-read non-ASCII SMILES, a quoted two-line cell, a huge one
CSV = (f'name,smiles\na,{ASPIRIN}\n\nb,CC\u00e9\nc,"CCO\nCCN"\n\nd,{TOO_LONG}\ne,{TOO_BIG}\n'
       f"f,{PARACETAMOL}\ng,CCCO\n")
EXPECTED_REJECTS = {  # row (data line) -> the reason's start
    2: chem.RejectReason.EMPTY, 3: chem.RejectReason.NON_ASCII,
    4: chem.RejectReason.WHITESPACE, 5: chem.RejectReason.EMPTY,
    6: f"SMILES too long: {len(TOO_LONG)} characters > {chem.SMILES_CHAR_LIMIT}",
    7: f"{chem.RejectReason.TOO_MANY_ATOMS}: {len(TOO_BIG)} > {chem.HEAVY_ATOM_LIMIT}"}


def hostile_csv(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.csv"
    path.write_text(CSV, encoding="utf-8")
    return path


def test_the_bound_comes_before_rdkit_works_on_the_molecule() -> None:
    mol, reason = chem.parse_with_reason("C" * 100_000)
    assert mol is None and reason == (f"SMILES too long: 100000 characters > "
                                      f"{chem.SMILES_CHAR_LIMIT}")
    assert chem.parse_with_reason(TOO_BIG)[1].startswith(chem.RejectReason.TOO_MANY_ATOMS)
    assert chem.to_mol(TOO_BIG) is None and chem.canonical_smiles(TOO_LONG) is None
    assert chem.parse_with_reason("C" * chem.HEAVY_ATOM_LIMIT)[1] is None  # the limit itself
    assert chem.parse_with_reason("C([H])([H])" * 300)[1] is None  # only heavy atoms count


def test_half_read_smiles_are_rejected_not_truncated() -> None:
    for text, reason in [("CC\u00e9", chem.RejectReason.NON_ASCII),
                         ("CCO\nCCN", chem.RejectReason.WHITESPACE),
                         ("CCO CCN", chem.RejectReason.WHITESPACE),
                         ("  \n", chem.RejectReason.EMPTY)]:
        assert chem.parse_with_reason(text) == (None, reason)
        assert chem.to_mol(text) is None
    assert chem.canonical_smiles(chem.parse_with_reason(" CCO \n")[0]) == "CCO"


def test_a_100000_character_smiles_does_not_kill_prep(tmp_path: Path) -> None:
    source = tmp_path / "huge.smi"
    source.write_text(f"{ASPIRIN}\n{'C' * 100_000} huge\n{PARACETAMOL}\n")
    done = subprocess.run([sys.executable, "-m", "molvae.cli", "prep", str(source), "--out",
                           str(tmp_path / "out"), "--workers", "1", "--no-track", "-q"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects["row"].tolist() == [2]
    assert rejects["reason"].iloc[0].startswith("SMILES too long: 100000 characters")


def test_prep_gives_every_line_a_row_and_a_fate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["prep", str(hostile_csv(tmp_path)), "--out", str(out), "--workers", "1",
                 "--no-track", "-q"]) == 0
    report = pd.read_json(out / "report.json", typ="series")
    assert report["counts"]["input"] == 9 and report["counts"]["rejected"] == 6
    rejects = pd.read_csv(out / "rejects.csv", keep_default_na=False)
    found = dict(zip(rejects["row"], rejects["reason"]))
    assert found.keys() == EXPECTED_REJECTS.keys()
    for row, start in EXPECTED_REJECTS.items():
        assert found[row].startswith(start), (row, found[row])
    kept = pd.concat(pd.read_parquet(out / f"{s}.parquet") for s in ("train", "val", "test"))
    assert sorted(kept["row"]) == [1, 8, 9]


def test_scoring_rejects_what_it_cannot_read_whole(tmp_path: Path) -> None:
    raw = read_table(hostile_csv(tmp_path))["smiles"].tolist()
    assert len(raw) == 9
    parsed = parse_set(raw, workers=1)
    for row, start in EXPECTED_REJECTS.items():
        assert parsed.canonical[row - 1] is None
        assert parsed.reasons[row - 1].startswith(start), (row, parsed.reasons[row - 1])
    assert [s is not None for s in parsed.canonical].count(True) == 3


def test_smi_files_keep_blank_lines_as_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.smi"
    path.write_text(f"{ASPIRIN} aspirin\n\n{PARACETAMOL}\n")
    assert read_table(path)["smiles"].tolist() == [ASPIRIN, "", PARACETAMOL]


def test_the_encode_path_of_a_model_refuses_huge_and_half_read_smiles(tiny_model: Path) -> None:
    model = load_model(tiny_model, device="cpu")
    ids = tokenize(model.vocab, [TOO_LONG, TOO_BIG, "CC\u00e9", "CCO\nCCN", "CCO"]).ids
    assert ids[:4] == [None] * 4 and ids[4] is not None


def _damaged(kind: str, good: bytes) -> bytes:
    return {"truncated": good[: len(good) // 2], "empty": b"",
            "random": bytes(range(256)) * 8}[kind]


@pytest.mark.parametrize("kind", ["truncated", "empty", "random"])
def test_a_corrupt_checkpoint_is_one_line_naming_it(kind: str, tmp_path: Path, capsys,
                                                    prepared_dir: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    torch.save({"format": "molvae-checkpoint/1", "weights": torch.zeros(256)}, out / "good.pt")
    (out / CHECKPOINT_FILE).write_bytes(_damaged(kind, (out / "good.pt").read_bytes()))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(out)
    code = main(["train", "--data", str(prepared_dir), "--out", str(out), "--resume",
                 "--preset", "tiny", "--device", "cpu", "--no-track", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("molvae train: error: cannot read ") and "\n" not in err
    assert str(out / CHECKPOINT_FILE) in err and "weights_only" not in err


def test_a_corrupt_model_file_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / MODEL_FILE).write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="truncated or corrupt") as caught:
        load_model(tmp_path, device="cpu")
    assert str(tmp_path / MODEL_FILE) in str(caught.value)
    assert "weights_only" not in str(caught.value)


def test_a_truncated_gzip_input_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    path = tmp_path / "in.csv.gz"
    whole = gzip.compress(("smiles\n" + f"{ASPIRIN}\n" * 2000).encode())
    path.write_bytes(whole[: len(whole) // 2])
    assert main(["prep", str(path), "--out", str(tmp_path / "out"), "--no-track", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"molvae prep: error: cannot read {path}: ") and "\n" not in err


@pytest.mark.parametrize("flag, value", [("--limit", "-5"), ("--limit", "0"),
                                         ("--workers", "-1"), ("--chunk-size", "0"),
                                         ("--max-tokens", "0"), ("--min-heavy-atoms", "0"),
                                         ("--max-heavy-atoms", "100000")])
def test_prep_refuses_nonsense_options(flag: str, value: str, tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.smi"
    source.write_text(f"{ASPIRIN}\n")
    assert main(["prep", str(source), flag, value, "--out", str(tmp_path / "out"),
                 "--no-track", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{flag[2:].replace('-', '_')} must be" in err and value in err
    assert not (tmp_path / "out").exists()
