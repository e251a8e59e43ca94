"""The shipped model at a glance: 24 seeded samples beside 24 random MOSES test molecules.

    python data/sample_grid.py moses --out molvae/pretrained/moses/samples.png

The first four rows are the model's samples (fitted prior, temperature 1, seed 0), the last
four are MOSES test molecules drawn with the same seed, all at one drawing scale, so a chemist
can judge at once whether the samples look like the data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from molvae import api, plots
from molvae.data.sources import read_moses

PER_SIDE, PER_ROW = 24, 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a model folder or a shipped model's name")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    samples = [s or "" for s in api.sample(args.model, PER_SIDE, seed=args.seed)]
    test = read_moses("test")["smiles"].sample(n=PER_SIDE, random_state=args.seed).tolist()
    legends = ["sample"] * PER_SIDE + ["MOSES test"] * PER_SIDE
    plots.molecule_grid(samples + test, legends, args.out, per_row=PER_ROW, size=(220, 220))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
