"""How many molecules the aggregate-posterior prior should hold: one model's samples from
posterior priors of different sizes, scored side by side.

    python benchmarks/prior_size.py --model moses --data runs/campaign/prepared \
        --priors val train:16384 train:32768 --samples 10000

Each prior is an equal mixture of molecules' posteriors N(mu_i, sigma_i^2)
(``fit_posterior_prior``): ``val`` those of the whole prepared validation split, ``train:N``
those of N random molecules of the training split. A sample drawn near a molecule's code
often decodes to that molecule, so the more molecules the mixture holds, the fewer samples
repeat one (uniqueness); each one also makes the prior file bigger (``prior_mb``: float16
means and scales, as shipped).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_recipe import posterior_codes

from molvae.api import load
from molvae.config import from_dict
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as score

METRICS = ("valid", "FCD/Test", "SNN/Test", "Filters", "Novelty", "KL_score")


def prior_codes(model: torch.nn.Module, data: Path, prior: str, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior means and log-variances a prior spec (``val`` or ``train:N``) names."""
    if prior == "val":
        selfies = pd.read_parquet(data / "val.parquet", columns=["selfies"])["selfies"]
    elif prior.startswith("train:") and prior[6:].isdigit() and int(prior[6:]) > 0:
        train = pd.read_parquet(data / "train.parquet", columns=["selfies"])["selfies"]
        selfies = train.sample(min(int(prior[6:]), len(train)), random_state=seed)
    else:
        raise SystemExit(f"a prior is 'val' or 'train:N' (N a whole number > 0), got '{prior}'")
    return posterior_codes(model, selfies.tolist())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses", help="a model folder or shipped name")
    parser.add_argument("--data", type=Path, required=True,
                        help="the model's prepared folder (train.parquet, val.parquet)")
    parser.add_argument("--priors", nargs="+", default=["val", "train:16384"])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=Path("runs/prior_size"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = load(args.model, "cpu")
    rows = {}
    for prior in args.priors:
        with torch.no_grad():
            mu, logvar = prior_codes(model, args.data, prior, args.seed)
        model.fit_posterior_prior(mu.numpy(), logvar.numpy(), size=len(mu), seed=args.seed)
        folder = args.out / prior.replace(":", "-")
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"smiles": model.sample(args.samples, seed=args.seed)}).to_csv(
            folder / "samples.csv", index=False)
        metrics = score(from_dict(ScoreConfig, {
            "generated": str(folder / "samples.csv"), "reference": "moses",
            "out": str(folder / "score"), "workers": 1, "device": "cpu",
            "unique_at": [args.samples], "grid_size": 24})).metrics
        rows[prior] = {"molecules": len(mu), "prior_mb": 2 * mu.numel() * 2 / 1e6,
                       f"unique@{args.samples}": metrics.get(f"unique@{args.samples}"),
                       **{k: metrics.get(k) for k in METRICS}}
        print(prior, json.dumps(rows[prior]), flush=True)
    print(pd.DataFrame.from_dict(rows, orient="index").round(3).to_string())


if __name__ == "__main__":
    main()
