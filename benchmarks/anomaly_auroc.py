"""Anomaly AUROC of a trained (or shipped) model: MOSES test molecules against the OOD set of
benchmarks/vq_compare.py, so the shipped model's anomaly score has a measured number.

    python benchmarks/anomaly_auroc.py --model moses --out runs/anomaly_auroc/moses

In distribution: ``--molecules`` random MOSES test molecules (``--seed``). Out of distribution:
vq_compare's set (natural product-like, outside the MOSES filters, macrocycles, from RDKit's
shipped molecule files; MOSES train molecules left out), built once into ``--ood``. Both are
scored by the anomaly stage and compared by vq_compare's ``anomaly_aurocs``: AUROC by negative
ELBO and by NLL per token, over all OOD molecules (one with tokens the model never saw scores
+inf) and over those the model can write, and per category. OUT/anomaly_auroc.json holds them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vq_compare import anomaly_aurocs, build_ood

from molvae.data.sources import cache_dir, read_moses
from molvae.scoring.reference import training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses", help="model folder or shipped name")
    parser.add_argument("--molecules", type=int, default=2000, help="MOSES test molecules")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ood", type=Path, default=Path("runs/anomaly_auroc/ood.csv"),
                        help="the OOD set (built here the first time)")
    parser.add_argument("--out", type=Path, default=Path("runs/anomaly_auroc/moses"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.ood.parent.mkdir(parents=True, exist_ok=True)
    # canonicalized once and cached, shared with `molvae score --reference moses`
    train = training_set(read_moses("train")["smiles"].tolist(), False, cache_dir() / "score")
    ood = build_ood(args.ood, train)
    inside = read_moses("test")["smiles"].sample(n=args.molecules, random_state=args.seed)
    started = time.perf_counter()
    found = {"model": args.model, "in_distribution": len(inside), "ood": len(ood),
             **ood["category"].value_counts().add_prefix("ood_").to_dict(),
             **anomaly_aurocs(args.model, inside.tolist(), ood, args.out),
             "seconds": time.perf_counter() - started}
    (args.out / "anomaly_auroc.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
