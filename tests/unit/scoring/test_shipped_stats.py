"""MOSES's shipped reference statistics: read through a restricted unpickler (a planted pickle
is refused), converted into molvae's own npz, and equal to what molvae computes itself."""

from __future__ import annotations

import io
import os
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from molvae import chem
from molvae.data.sources import cache_dir
from molvae.scoring import fcd, reference

WHEEL_CACHED = any((cache_dir() / "molsets").glob("molsets-0.3.1-*.whl"))
needs_wheel = pytest.mark.skipif(not WHEEL_CACHED, reason="molsets wheel not in the cache")


def npy_of(payload: bytes) -> io.BytesIO:
    """A ``.npy`` stream whose header says 'one pickled object' followed by ``payload``."""
    handle = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        handle, {"descr": "|O", "fortran_order": False, "shape": ()})
    handle.write(payload)
    handle.seek(0)
    return handle


class Planted:
    def __reduce__(self) -> tuple:
        return os.system, ("echo planted > planted.txt",)


def test_a_planted_os_system_pickle_is_refused(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    payload = pickle.dumps(np.array({"FCD": Planted()}, dtype=object), protocol=2)
    calls: list = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(pickle.UnpicklingError, match="refused to unpickle .*system"):
        reference.read_pickled_npy(npy_of(payload))
    assert not calls and not (tmp_path / "planted.txt").exists()


def test_arrays_dicts_and_counters_come_through() -> None:
    stats = {"SNN": {"fps": np.eye(3, dtype=np.uint8)}, "Frag": {"frag": Counter(a=2, b=1)},
             "logP": {"values": [1.0, 2.5]}}
    handle = io.BytesIO()
    np.save(handle, np.array(stats, dtype=object), allow_pickle=True)
    handle.seek(0)
    loaded = reference.read_pickled_npy(handle)
    assert np.array_equal(loaded["SNN"]["fps"], stats["SNN"]["fps"])
    assert loaded["Frag"]["frag"] == Counter(a=2, b=1)
    assert loaded["logP"]["values"] == [1.0, 2.5]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    return reference.shipped_moses_stats("test", tmp_path_factory.mktemp("stats"))


@needs_wheel
@pytest.mark.slow
def test_shipped_statistics_equal_molvaes_own_on_the_first_molecules(
        shipped: dict[str, np.ndarray], tmp_path: Path) -> None:
    """Fingerprints and the four properties of MOSES's first 300 test molecules, as molvae
    computes them with today's RDKit, equal the shipped rows; the npz cache reads back."""
    from molvae.data.sources import read_moses

    smiles = read_moses("test")["smiles"].tolist()
    assert len(shipped["logP"]) == len(smiles)
    mols = [chem.to_mol(s) for s in smiles[:300]]
    fingerprints = np.array([chem.packed_fingerprint(m) for m in mols])
    assert np.array_equal(fingerprints, shipped["fingerprints"][:300])
    props = [chem.properties(m) for m in mols]
    for ours, theirs in reference.SHIPPED_PROPERTIES.items():
        assert np.allclose([p[ours] for p in props], shipped[theirs][:300], atol=1e-6), ours
    cached = reference.shipped_moses_stats("test", tmp_path)
    assert (tmp_path / f"moses-test-stats-v{reference.SHIPPED_VERSION}.npz").is_file()
    assert np.array_equal(reference.shipped_moses_stats("test", tmp_path)["sigma"],
                          cached["sigma"])


@needs_wheel
@pytest.mark.slow
def test_fcd_from_shipped_statistics_matches_chemnet_run_here(
        shipped: dict[str, np.ndarray]) -> None:
    """The shipped ChemNet mean/covariance are those of the test set as fcd_torch computes
    them here: a 2,000-molecule subset is as close to the shipped statistics as it is to an
    independent subset's own (the sampling noise), and closer than MOSES's scaffold-test
    statistics are. (The full 176k set through ChemNet takes ~15 CPU minutes: not a unit
    test.)"""
    from molvae.data.sources import read_moses

    rng = np.random.default_rng(0)
    smiles = np.array(read_moses("test")["smiles"])
    first, second = (rng.choice(smiles, 2000, replace=False).tolist() for _ in range(2))
    own = [fcd.chemnet_statistics(s, np.ones(len(s)), "cpu") for s in (first, second)]
    to_shipped = fcd.frechet_distance((shipped["mu"], shipped["sigma"]), own[0])
    between_subsets = fcd.frechet_distance(own[0], own[1])
    # one noisy side against two: about half the subset-to-subset distance
    assert to_shipped < 0.75 * between_subsets
    scaffolds = reference.shipped_moses_stats("test_scaffolds", None)
    assert fcd.frechet_distance((scaffolds["mu"], scaffolds["sigma"]), own[0]) > to_shipped
