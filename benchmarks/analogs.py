"""Analogs of MOSES test molecules: how well ``molvae analogs`` makes more data like given
molecules, with a shipped (or any) model.

    python benchmarks/analogs.py --model moses --parents 100 --n 50 --out runs/analogs

Picks ``--parents`` random MOSES test molecules (seeded), runs the analogs stage on them, and
prints: parents the model could encode, analogs per parent inside the similarity band (mean,
median, share of parents that got all ``--n``), validity of the decoded codes, uniqueness
(distinct molecules among the valid ones), novelty (analogs absent from the MOSES training
set), and how the analogs' properties spread around their parent's (median and 10th-90th
percentile of analog minus parent). The numbers land in OUT/analogs_benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import from_dict
from molvae.data.sources import cache_dir, read_moses
from molvae.scoring.reference import training_set
from molvae.stages.analogs import AnalogsConfig
from molvae.stages.analogs import run as analogs

SPREAD_PROPERTIES = ("mw", "logp", "qed", "sa", "heavy_atoms")


def property_spread(found: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Analog minus parent for each property: median and 10th/90th percentiles."""
    parents = {s: chem.smiles_properties(s) for s in found["parent"].unique()}
    spread = {}
    for name in SPREAD_PROPERTIES:
        delta = found[name].to_numpy(float) - np.array([parents[p][name]
                                                        for p in found["parent"]])
        low, median, high = np.nanpercentile(delta, [10, 50, 90])
        spread[name] = {"median": float(median), "p10": float(low), "p90": float(high)}
    return spread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses")
    parser.add_argument("--parents", type=int, default=100)
    parser.add_argument("--n", type=int, default=50, help="analogs asked per parent")
    parser.add_argument("--similarity", default="0.4:0.8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/analogs"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    parents = read_moses("test")["smiles"].sample(n=args.parents, random_state=args.seed)
    source = args.out / "parents.smi"
    source.write_text("\n".join(parents) + "\n")
    started = time.perf_counter()
    result = analogs(from_dict(AnalogsConfig, {
        "molecules": str(source), "model": args.model, "n": args.n,
        "similarity": args.similarity, "seed": args.seed, "out": str(args.out / "stage"),
        "device": "cpu"}))
    seconds = time.perf_counter() - started
    summary, found = result.parents, result.analogs
    usable = summary[summary["reason"] == ""]
    # canonicalized once and cached, shared with `molvae score --reference moses`
    train = training_set(read_moses("train")["smiles"].tolist(), False, cache_dir() / "score")
    report = {
        "model": args.model, "parents": len(summary), "parents_encoded": len(usable),
        "band": args.similarity, "asked_per_parent": args.n,
        "analogs_per_parent_mean": float(usable["analogs"].mean()),
        "analogs_per_parent_median": float(usable["analogs"].median()),
        "parents_filled": float((usable["analogs"] >= args.n).mean()),
        "parents_with_none": int((usable["analogs"] == 0).sum()),
        "validity": float(usable["valid"].sum() / usable["decoded"].sum()),
        "uniqueness": float(usable["distinct"].sum() / usable["valid"].sum()),
        "novelty": float(np.mean([s not in train for s in found["smiles"]])),
        "mean_similarity": float(found["similarity"].mean()),
        "property_spread": property_spread(found), "seconds": seconds,
    }
    (args.out / "analogs_benchmark.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
