"""Trust, round three (issue 25), items 8, 10 and 13: inputs and an operating system that bite.

A hostile user found a 20,000-atom SDF record that segfaulted prep and encode, a garbage
``.sdf.gz`` that ended in ``SystemError``, operating-system errors (a file for a folder, a full
disk, an unreachable cluster, an edited model file) that ended in tracebacks, user columns named
like prep's own that stopped prep, and messages that pointed nowhere (an empty ``rejects.csv``
for a header-only CSV, "empty SMILES" for a malformed SDF record). Each is now one line naming
the path or option (exit 2), or a reject with its reason.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem
from rdkit.Geometry import Point3D

from molvae import chem, parallel
from molvae.cli import main
from molvae.latent.regressors import (
    RegressorOptions,
    load_regressor,
    make_regressor,
    save_regressor,
)
from molvae.latent.surrogate import Surrogate
from molvae.model.pretrained import pretrained_dir
from tests.conftest import ASPIRIN, PARACETAMOL

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
GIANT_ATOMS = 20_000


def molblock(smiles: str) -> str:
    return Chem.MolToMolBlock(Chem.MolFromSmiles(smiles))


def giant_chain_molblock(atoms: int = GIANT_ATOMS) -> str:
    """An alkane chain of ``atoms`` carbons as a V3000 molblock. Coordinates are set by hand:
    RDKit's 2D layout of 20,000 atoms takes minutes."""
    chain = Chem.RWMol()
    chain.AddAtom(Chem.Atom(6))
    for i in range(1, atoms):
        chain.AddAtom(Chem.Atom(6))
        chain.AddBond(i - 1, i, Chem.BondType.SINGLE)
    conformer = Chem.Conformer(atoms)
    for i in range(atoms):
        conformer.SetAtomPosition(i, Point3D(1.5 * i, 0.0, 0.0))
    chain.AddConformer(conformer)
    mol = chain.GetMol()
    mol.UpdatePropertyCache(strict=False)
    return Chem.MolToMolBlock(mol, kekulize=False, forceV3000=True)


def sdf(path: Path, *blocks: str) -> Path:
    path.write_text("".join(f"{block.rstrip()}\n$$$$\n" for block in blocks))
    return path


def one_line_error(capsys: pytest.CaptureFixture, verb: str) -> str:
    """The error line of a failed command (after any progress bar): one line, no traceback."""
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"molvae {verb}: error: ") and "Traceback" not in err, err
    return line


def splits(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(out / f"{s}.parquet") for s in ("train", "val", "test"))


# --- item 8: a giant SDF record, a garbage .sdf.gz ---------------------------------------------

def test_a_20000_atom_sdf_record_is_a_reject_in_prep_and_encode_not_a_segfault(
        tmp_path: Path) -> None:
    source = sdf(tmp_path / "giant.sdf", molblock(ASPIRIN), giant_chain_molblock(),
                 molblock(PARACETAMOL))
    reason = f"{chem.RejectReason.TOO_MANY_ATOMS}: {GIANT_ATOMS} > {chem.HEAVY_ATOM_LIMIT}"
    # subprocesses: a segfault must fail this test, not kill the test run
    done = subprocess.run([sys.executable, "-m", "molvae.cli", "prep", str(source), "--out",
                           str(tmp_path / "out"), "--workers", "1", "--no-track", "-q"],
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects[["row", "reason"]].values.tolist() == [[2, reason]]
    assert sorted(splits(tmp_path / "out")["row"]) == [1, 3]

    latents = tmp_path / "latents.csv"
    done = subprocess.run([sys.executable, "-m", "molvae.cli", "encode", str(source), "--model",
                           "moses", "--out", str(latents), "--device", "cpu", "--no-track",
                           "-q"], capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    table = pd.read_csv(latents)
    assert len(table) == 3 and table["mu_0"].isna().tolist() == [False, True, False]
    assert table.loc[1, chem.SDF_REASON] == reason


@pytest.mark.parametrize("kind", ["random", "not gzip", "truncated"])
def test_a_garbage_sdf_gz_is_one_line_naming_it(kind: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "in.sdf.gz"
    whole = gzip.compress(f"{molblock(ASPIRIN)}\n$$$$\n".encode() * 200)
    path.write_bytes({"random": bytes(range(256)) * 16, "not gzip": b"no gzip here\n",
                      "truncated": whole[: len(whole) // 2]}[kind])
    assert main(["prep", str(path), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--no-track", "-q"]) == 2
    err = one_line_error(capsys, "prep")
    assert f"cannot read {path}: not a readable SDF file" in err and "SystemError" not in err


# --- item 13: colliding columns, a header-only CSV, malformed SDF records ----------------------

def test_user_columns_named_like_prep_s_own_are_kept_under_another_name(
        tmp_path: Path, caplog) -> None:
    source = tmp_path / "in.csv"
    source.write_text(f"smiles,source,row,order\n{ASPIRIN},vendor A,r7,3\n"
                      f"{PARACETAMOL},vendor B,r9,1\nCCO,vendor C,r1,2\n")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        assert main(["prep", str(source), "--out", str(out), "--workers", "1", "--no-track",
                     "-q"]) == 0
    kept = splits(out).sort_values("row")
    assert kept["source"].tolist() == [str(source)] * 3 and kept["row"].tolist() == [1, 2, 3]
    assert kept["input_source"].tolist() == ["vendor A", "vendor B", "vendor C"]
    assert kept["input_row"].tolist() == ["r7", "r9", "r1"]
    assert kept["input_order"].tolist() == [3, 1, 2]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "input_source" in said and "input_row" in said and "input_order" in said


def test_a_header_only_csv_says_there_are_no_molecules(tmp_path: Path, capsys) -> None:
    source = tmp_path / "empty.csv"
    source.write_text("smiles,name\n")
    assert main(["prep", str(source), "--out", str(tmp_path / "out"), "--workers", "1",
                 "--no-track", "-q"]) == 2
    err = one_line_error(capsys, "prep")
    assert f"no molecules in {source}" in err and "rejects.csv" not in err


def test_malformed_sdf_records_are_rejected_with_rdkit_s_reason(tmp_path: Path) -> None:
    good = molblock("CCO").splitlines()
    short_atom = "\n".join([*good[:4], "nonsense", *good[5:]])
    bad_element = "\n".join([*good[:4], good[4][:31] + "Xx" + good[4][33:], *good[5:]])
    source = sdf(tmp_path / "in.sdf", molblock(ASPIRIN), short_atom, bad_element,
                 molblock(PARACETAMOL))
    table = chem.read_sdf(source)
    assert table["smiles"].notna().tolist() == [True, False, False, True]
    out = tmp_path / "out"
    assert main(["prep", str(source), "--out", str(out), "--workers", "1", "--no-track",
                 "-q"]) == 0
    rejects = pd.read_csv(out / "rejects.csv")
    assert rejects["row"].tolist() == [2, 3]
    first, second = rejects["reason"]
    assert first.startswith("unparsable SDF record: Atom line too short: 'nonsense'"), first
    assert second == "unparsable SDF record: Element 'Xx' not found", second
    assert chem.SDF_REASON not in splits(out).columns


# --- item 10: operating-system errors, options and files that are not what they say ------------

@pytest.mark.parametrize("value", ["nan", "inf"])
def test_temperature_must_be_a_finite_number(value: str, tmp_path: Path, capsys) -> None:
    assert main(["sample", "--model", "moses", "-n", "2", "--temperature", value, "--out",
                 str(tmp_path / "s.csv"), "--device", "cpu", "--no-track", "-q"]) == 2
    assert "temperature must be a finite number > 0" in one_line_error(capsys, "sample")
    assert main(["decode", str(tmp_path / "z.csv"), "--model", "moses", "--no-greedy",
                 "--temperature", value, "--out", str(tmp_path / "d.csv"), "--no-track",
                 "-q"]) == 2
    assert "temperature must be a finite number > 0" in one_line_error(capsys, "decode")


def pipeline_yaml(tmp_path: Path, workdir: Path) -> Path:
    source = tmp_path / "in.smi"
    source.write_text(f"{ASPIRIN}\n{PARACETAMOL}\nCCO\n")
    path = tmp_path / "pipe.yaml"
    path.write_text(f"workdir: {workdir}\nstages:\n  prep:\n    inputs: [{source}]\n"
                    "    workers: 1\n")
    return path


def test_a_pipeline_workdir_that_is_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    workdir = tmp_path / "workdir"
    workdir.write_text("a file")
    assert main(["run", str(pipeline_yaml(tmp_path, workdir)), "--no-track", "-q"]) == 2
    err = one_line_error(capsys, "run")
    assert str(workdir) in err and "is a file, not a folder" in err


def test_bad_yaml_in_set_names_the_option(tmp_path: Path, capsys) -> None:
    pipeline = pipeline_yaml(tmp_path, tmp_path / "runs")
    assert main(["run", str(pipeline), "--set", "prep.limit=[1", "--no-track", "-q"]) == 2
    err = one_line_error(capsys, "run")
    assert "--set prep.limit=[1: the value is not valid YAML" in err
    assert not (tmp_path / "runs").exists()


def test_an_out_that_is_an_existing_folder_is_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "samples.csv"
    out.mkdir()
    assert main(["sample", "--model", "moses", "-n", "2", "--out", str(out), "--device", "cpu",
                 "--no-track", "-q"]) == 2
    assert one_line_error(capsys, "sample").endswith(f"{out}: Is a directory")


def test_a_read_only_out_is_one_line_naming_it(tmp_path: Path, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run as root here, where chmod cannot refuse a write: the refusal is staged."""
    out = tmp_path / "read-only" / "samples.csv"

    def refused(table: pd.DataFrame, path: Path) -> Path:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr("molvae.stages.sample.write_molecules", refused)
    assert main(["sample", "--model", "moses", "-n", "2", "--out", str(out), "--device", "cpu",
                 "--no-track", "-q"]) == 2
    assert one_line_error(capsys, "sample").endswith(f"{out}: Permission denied")


def test_a_full_disk_is_one_line_and_prep_leaves_no_work_behind(
        tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fills the disk raises ENOSPC without naming its file; the line names --out,
    and the half-built folder and every piece go, not to fill the disk further."""
    source = tmp_path / "in.smi"
    source.write_text(f"{ASPIRIN}\n{PARACETAMOL}\nCCO\n")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    out = tmp_path / "out"
    assert main(["prep", str(source), "--out", str(out), "--workers", "1", "--no-track",
                 "-q"]) == 2
    err = one_line_error(capsys, "prep")
    assert err.endswith(f"cannot write {out}: No space left on device"), err
    assert not list(tmp_path.rglob(".out.prep-*")) and not list(tmp_path.rglob("part-*"))


def test_an_unreachable_cluster_fails_fast_naming_it(tmp_path: Path, capsys,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT_S", 1.0, raising=False)  # 10 s by default
    source = tmp_path / "in.smi"
    source.write_text(f"{ASPIRIN}\n")
    started = time.perf_counter()
    assert main(["prep", str(source), "--out", str(tmp_path / "out"), "--cluster", address,
                 "--no-track", "-q"]) == 2
    assert time.perf_counter() - started < 20
    err = one_line_error(capsys, "prep")
    assert f"cannot connect to the Dask scheduler at {address}" in err


def edited_model(tmp_path: Path, edit: str) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(pretrained_dir("moses"), folder)
    state = torch.load(folder / "model.pt", weights_only=True)
    if edit == "config":
        state["config"]["surprise"] = 1
    elif edit == "weights":
        name = next(iter(state["state_dict"]))
        state["state_dict"][name] = torch.zeros(3, 3)
    elif edit == "vocab":
        state["vocab"] = {"tokens": 5}
    else:
        state["format"] = "something-else/9"
    torch.save(state, folder / "model.pt")
    return folder


@pytest.mark.parametrize("edit", ["config", "weights", "vocab", "format"])
def test_an_edited_model_file_is_one_line_naming_it(edit: str, tmp_path: Path, capsys) -> None:
    model = edited_model(tmp_path, edit)
    assert main(["sample", "--model", str(model), "-n", "2", "--out", str(tmp_path / "s.csv"),
                 "--device", "cpu", "--no-track", "-q"]) == 2
    assert f"cannot load {model / 'model.pt'}: not a usable molvae model" in \
        one_line_error(capsys, "sample")


def tamper_skops(path: Path, edit: str) -> None:
    good = path.read_bytes()
    if edit == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(parts["schema.json"])
    if edit == "code":  # the estimator replaced by a call of os.system

        def swap(node: object) -> None:
            if isinstance(node, dict):
                if node.get("__class__") == "RidgeCV":
                    node.update({"__class__": "system", "__module__": "os"})
                for value in node.values():
                    swap(value)
            elif isinstance(node, list):
                for value in node:
                    swap(value)

        swap(schema)
    else:
        schema = {"protocol": schema.get("protocol")}
    parts["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("edit", ["truncated", "code", "schema"])
def test_an_edited_regressor_is_one_line_naming_it(edit: str, tmp_path: Path, capsys) -> None:
    regress = tmp_path / "regress"
    rng = np.random.default_rng(0)
    estimator = make_regressor("ridge", RegressorOptions()).fit(rng.random((20, 3)),
                                                                rng.random(20))
    path = save_regressor(estimator, regress / "regressors", "qed", {})
    tamper_skops(path, edit)
    with pytest.raises(ValueError, match=f"cannot load {path}|cannot read {path}") as caught:
        load_regressor(regress, "qed")
    assert "\n" not in str(caught.value)
    if edit == "code":
        assert "os.system" in str(caught.value) and "refused" in str(caught.value)
    assert main(["predict", ASPIRIN, "--model", "moses", "--regress", str(regress), "--out",
                 str(tmp_path / "p.csv"), "--device", "cpu", "--no-track", "-q"]) == 2
    assert str(path) in one_line_error(capsys, "predict")


def test_an_edited_surrogate_is_one_line_naming_it(tmp_path: Path) -> None:
    path = Surrogate(4, 8, 2).save(tmp_path / "qed.pt")
    state = torch.load(path, weights_only=True)
    state["config"]["hidden_dim"] = 16  # the weights no longer fit
    torch.save(state, path)
    with pytest.raises(ValueError, match=f"cannot load {path}: not a usable surrogate"):
        Surrogate.load(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0])
def test_the_model_and_the_policy_refuse_a_temperature_that_is_not_finite(value: float) -> None:
    from molvae.config import ConfigError, from_dict
    from molvae.model.store import load_model
    from molvae.stages.optimize import OptimizeConfig

    model = load_model(pretrained_dir("moses"), device="cpu")
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        model.sample(2, temperature=value, seed=0)
    with pytest.raises(ConfigError, match="policy.temperature must be"):
        from_dict(OptimizeConfig, {"model": "moses", "objective": "qed", "out": "o",
                                   "policy": {"temperature": value}})
