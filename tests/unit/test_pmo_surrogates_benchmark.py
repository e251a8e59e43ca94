"""benchmarks/pmo_surrogates.py: each surrogate learns a run's first molecules and ranks the
next ones; on a property objective the descriptor kernel ranks them best."""

from pathlib import Path

import pandas as pd

from benchmarks.pmo_surrogates import ranking
from molvae import chem


def test_ranking_of_the_next_molecules_by_each_surrogate(molecules_csv: Path) -> None:
    smiles = pd.read_csv(molecules_csv)["smiles"].tolist()
    calls = pd.DataFrame({"smiles": smiles, "oracle_call": range(1, len(smiles) + 1),
                          "score": [chem.properties(chem.to_mol(s), ["tpsa"])["tpsa"]
                                    for s in smiles]})
    result = ranking(calls.iloc[::-1], at=70, following=30, top=5)  # rows in any order
    assert set(result) == {"gp", "gp-descriptors", "neighbours"}
    assert result["gp-descriptors"][0] > 0.9 > result["gp"][0]
    assert all(0.0 <= hits <= 1.0 and seconds >= 0 for _, hits, seconds in result.values())
