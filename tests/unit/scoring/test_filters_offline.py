"""MOSES's filter patterns ship with molvae: the Filters metric never needs the network."""

import pytest

from molvae import chem
from molvae.data import sources
from molvae.scoring.reference import moses_filter_smarts


def test_moses_filters_are_read_from_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline() -> None:
        raise AssertionError("the molsets wheel must not be needed for the filters")

    monkeypatch.setattr(sources, "moses_wheel", offline)
    patterns = moses_filter_smarts()
    assert len(patterns) == 502  # MOSES: 22 MCF + 480 WEHI PAINS patterns
    catalog = chem.smarts_catalog(patterns)
    aspirin, epoxide = chem.to_mol("CC(=O)Oc1ccccc1C(=O)O"), chem.to_mol("CC1OC1c1ccccc1")
    assert chem.passes_moses_filters(aspirin, catalog)
    assert not chem.passes_moses_filters(epoxide, catalog)  # MCF5: an epoxide
