"""Regenerate the embedded default data set: a seeded 50,000-molecule sample of MOSES train.

Run from the project root: ``python data/make_sample.py`` (downloads the molsets wheel once).
"""

from __future__ import annotations

from pathlib import Path

from molvae.data.sources import read_moses

SIZE, SEED = 50_000, 0


def main() -> None:
    sample = read_moses("train").sample(n=SIZE, random_state=SEED).reset_index(drop=True)
    out = Path(__file__).with_name("moses_sample.csv.gz")
    sample[["smiles"]].to_csv(out, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {len(sample)} molecules to {out}")


if __name__ == "__main__":
    main()
