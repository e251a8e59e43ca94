"""Latent property regression: test R² / MAE per regressor, for models with and without a head.

Runs the regress stage once per model on the same prepared data and prints one table per
property (rows: regressors, the model's own head, the torch surrogate; columns: models), plus
the encoding speed with and without the latent cache.

    python benchmarks/regress.py --data runs/prep --models model_plain model_head
    python benchmarks/regress.py --data runs/prep --models m --properties qed logp sa activity
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from molvae.config import from_dict
from molvae.latent.encode import encode_split
from molvae.latent.regressors import REGRESSORS
from molvae.model.store import load_model
from molvae.stages.regress import RegressConfig
from molvae.stages.regress import run as run_regress


def encode_speed(model_dir: str, data: str, cache: Path) -> tuple[float, float, int]:
    """(cold seconds, cached seconds, molecules) for encoding the train split."""
    model = load_model(model_dir)
    start = time.perf_counter()
    mu, _ = encode_split(model, data, "train", cache_dir=cache)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    encode_split(model, data, "train", cache_dir=cache)
    return cold, time.perf_counter() - start, len(mu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="prepared folder (molvae prep --out)")
    parser.add_argument("--models", nargs="+", required=True, help="model folders to compare")
    parser.add_argument("--properties", nargs="+", default=["qed", "logp", "sa"])
    parser.add_argument("--regressors", nargs="+", default=list(REGRESSORS))
    parser.add_argument("--max-train", type=int, default=None, help="training molecules used")
    parser.add_argument("--gp-max-train", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, model in enumerate(args.models):
            cold, cached, n = encode_speed(model, args.data, Path(tmp) / f"speed{index}")
            print(f"{model}: encoded {n} molecules in {cold:.2f} s ({n / cold:,.0f} mol/s); "
                  f"from the cache in {cached:.3f} s", flush=True)
            config = from_dict(RegressConfig, {
                "model": model, "data": args.data, "out": str(Path(tmp) / f"out{index}"),
                "properties": args.properties, "regressors": args.regressors,
                "max_train": args.max_train, "gp_max_train": args.gp_max_train,
                "device": args.device, "seed": args.seed})
            result = run_regress(config)
            results[model] = result.scores
            fits = {f"{p}/{r}": s.get("seconds") for p, by in result.scores.items()
                    for r, s in by.items() if s.get("seconds") is not None}
            print(f"{model}: regress took {result.seconds:.1f} s; fit seconds "
                  + ", ".join(f"{k} {v:.1f}" for k, v in fits.items()), flush=True)
    for prop in args.properties:
        print(f"\n{prop}: test R² / MAE")
        print("| regressor | " + " | ".join(args.models) + " |")
        print("|---" * (len(args.models) + 1) + "|")
        names = dict.fromkeys(n for m in args.models for n in results[m][prop])
        for name in names:
            cells = [f"{s['r2']:.3f} / {s['mae']:.3g}" if (s := results[m][prop].get(name))
                     else "—" for m in args.models]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
