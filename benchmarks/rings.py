"""Rings per molecule of sample files beside MOSES's test set: SELFIES' aromatic deficit.

    python benchmarks/rings.py runs/tsweep/s0.7.csv runs/tsweep/s1.0.csv --n 5000

A SELFIES decoder writes an aromatic ring as a Kekulé ring token by token; one wrong token
leaves a ring with double bonds that does not come out aromatic (a "broken" ring), still a
valid molecule. The table says how many aromatic, aliphatic and broken rings each file's
molecules carry, and the share of 5- and 6-membered rings, beside the same for ``--n``
random MOSES test molecules (:func:`cpu_recipe.ring_counts`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_recipe import ring_counts

from molvae.data.sources import read_moses
from molvae.io import read_table


def table(files: Sequence[Path], n: int) -> pd.DataFrame:
    """One row per file (its first ``n`` SMILES) and one for ``n`` random MOSES test
    molecules."""
    rows = {}
    for path in files:
        smiles = read_table(path)["smiles"].dropna().head(n).tolist()
        rows[str(path)] = {"molecules": len(smiles), **ring_counts(smiles)}
    test = read_moses("test")["smiles"].sample(n=n, random_state=0).tolist()
    rows["MOSES test"] = {"molecules": len(test), **ring_counts(test)}
    return pd.DataFrame.from_dict(rows, orient="index")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="CSV/Parquet with a smiles column")
    parser.add_argument("--n", type=int, default=5000, help="molecules per file (default 5000)")
    args = parser.parse_args(argv)
    print(table(args.files, args.n).round(3).to_string())


if __name__ == "__main__":
    main()
