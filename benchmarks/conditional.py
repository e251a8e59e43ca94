"""Conditional generation (CVAE) against sampling an unconditional VAE and filtering.

    python benchmarks/conditional.py --work runs/cvae            # prep, train both, measure
    python benchmarks/conditional.py --data PREPARED --cvae M1 --vae M2 -n 500 -k 100

Trains (unless given) a conditional ``small`` model on ``--conditions`` and an unconditional
one on the same data (``data/moses_sample.csv.gz`` through ``molvae prep --limit 20000`` by
default, a few epochs, one thread). Then for each target NAME=VALUE both models draw ``n``
molecules: the CVAE is asked for the target (its other conditions at their training means),
the VAE is not. Printed per target, the mean absolute error between requested and achieved
property over the valid molecules: CVAE (all n), CVAE and VAE keeping the ``k`` valid ones
closest to the target (the same budget of n samples for both), and VAE unfiltered.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from molvae import chem
from molvae.config import from_dict
from molvae.model.store import load_model
from molvae.stages.prep import PrepConfig
from molvae.stages.prep import run as prep
from molvae.training.config import TrainConfig
from molvae.training.loop import train_model

ROOT = Path(__file__).resolve().parents[1]
TARGETS = "qed=0.6,qed=0.8,qed=0.9,logp=1,logp=3,logp=5"


def train(data: Path, out: Path, conditions: list[str], args: argparse.Namespace) -> Path:
    if (out / "model.pt").is_file():
        return out
    started = time.perf_counter()
    result = train_model(from_dict(TrainConfig, {
        "data": str(data), "out": str(out), "preset": "small", "condition": conditions,
        "epochs": args.epochs, "batch_size": 128, "max_train": args.max_train,
        "kl_warmup_steps": 1000, "lr_warmup_steps": 100, "eval_samples": 200,
        "eval_molecules": 200, "log_model": False, "device": "cpu", "threads": 1,
        "seed": args.seed}))
    print(f"trained {out} in {time.perf_counter() - started:.0f} s: "
          f"best val_loss {result.progress.best_val_loss:.2f}", flush=True)
    return out


def achieved(smiles: list[str | None], name: str) -> np.ndarray:
    """The property of the valid molecules."""
    return np.array([chem.smiles_properties(s)[name] for s in smiles
                     if s and chem.to_mol(s) is not None], dtype=float)


def mae(values: np.ndarray, target: float, keep: int | None = None) -> float:
    """Mean absolute error to ``target`` of all values, or of the ``keep`` closest."""
    errors = np.sort(np.abs(values - target))
    return float(errors[:keep].mean()) if len(errors) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/cvae"), help="working folder")
    parser.add_argument("--data", type=Path, help="prepared folder (default: prep into WORK)")
    parser.add_argument("--limit", type=int, default=20000, help="molecules prepared")
    parser.add_argument("--cvae", type=Path, help="a conditional model (default: train one)")
    parser.add_argument("--vae", type=Path, help="an unconditional model (default: train one)")
    parser.add_argument("--conditions", default="qed,logp", help="conditions of the CVAE")
    parser.add_argument("--targets", default=TARGETS, help="NAME=VALUE,...")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("-n", type=int, default=500, help="samples per target and model")
    parser.add_argument("-k", type=int, default=100, help="closest valid molecules kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = args.data
    if data is None:
        data = args.work / "prepared"
        if not (data / "vocab.json").is_file():
            prep(from_dict(PrepConfig, {"inputs": [str(ROOT / "data/moses_sample.csv.gz")],
                                        "out": str(data), "limit": args.limit, "workers": 1}))
    conditions = args.conditions.split(",")
    cvae = load_model(args.cvae or train(data, args.work / "cvae", conditions, args), "cpu")
    vae = load_model(args.vae or train(data, args.work / "vae", [], args), "cpu")
    rows = []
    for index, item in enumerate(args.targets.split(",")):
        name, value = item.split("=")
        target = float(value)
        seed = args.seed + index
        conditional = achieved(cvae.sample(args.n, seed=seed, conditions={name: target}), name)
        plain = achieved(vae.sample(args.n, seed=seed), name)
        rows.append({"target": item, "cvae_mae": mae(conditional, target),
                     "cvae_top_k_mae": mae(conditional, target, args.k),
                     "vae_top_k_mae": mae(plain, target, args.k), "vae_mae": mae(plain, target),
                     "cvae_mean": float(conditional.mean()), "vae_mean": float(plain.mean()),
                     "cvae_validity": len(conditional) / args.n,
                     "vae_validity": len(plain) / args.n})
    print(f"n={args.n} samples per target and model, k={args.k} kept")
    print("| target | CVAE MAE (all n) | CVAE best-k MAE | VAE best-k MAE | VAE MAE (all n) "
          "| CVAE mean | VAE mean | validity CVAE / VAE |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['target']} | {r['cvae_mae']:.3f} | {r['cvae_top_k_mae']:.3f} | "
              f"{r['vae_top_k_mae']:.3f} | {r['vae_mae']:.3f} | {r['cvae_mean']:.3f} | "
              f"{r['vae_mean']:.3f} | {r['cvae_validity']:.2f} / {r['vae_validity']:.2f} |")
    (args.work / "conditional.json").parent.mkdir(parents=True, exist_ok=True)
    (args.work / "conditional.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
