"""The pattern-fingerprint screen gives the answers of matching every pattern."""

import pandas as pd
from rdkit import Chem

from molvae import chem
from molvae.chem.filters import ScreenedPatterns, _rdkit_catalog
from tests.conftest import FIXTURES

PAINS_HITS = ["O=C1NC(=S)SC1=Cc1ccccc1",  # ene_rhod
              "Oc1ccccc1O",  # catechol
              "CN(C)c1ccc(N=Nc2ccccc2)cc1",  # azo
              "O=C1C=CC(=O)C=C1"]  # quinone


def test_screened_pains_equals_rdkit_filter_catalog() -> None:
    smiles = [*pd.read_csv(FIXTURES / "molecules.csv")["smiles"], *PAINS_HITS]
    mols = [chem.to_mol(s) for s in smiles]
    expected = [bool(_rdkit_catalog("PAINS").HasMatch(m)) for m in mols]
    assert [chem.matches_catalog(m, "PAINS") for m in mols] == expected
    assert sum(expected) >= 2


def test_screen_finds_what_trying_every_pattern_finds() -> None:
    patterns = ("[OH]c1ccccc1", "C(=O)[OH]", "[#7]", "[Cl,Br,I]", "[#6]-[#1]", "C#N", "[R3]")
    screened = ScreenedPatterns(patterns)
    for smiles in pd.read_csv(FIXTURES / "molecules.csv")["smiles"]:
        mol = chem.to_mol(smiles)
        for molecule in (mol, Chem.AddHs(mol)):
            every = any(molecule.HasSubstructMatch(q) for q in screened.queries)
            assert screened.has_match(molecule) == every, smiles
