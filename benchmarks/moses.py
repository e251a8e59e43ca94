"""The MOSES protocol end to end, in steps that resume: prep → train → sample → score, then
whole-molecule reconstruction and active units, printed as a row of the MOSES README table.

    python benchmarks/moses.py --minutes 9                    # one ≤10-minute step; rerun it
    python benchmarks/moses.py --max-train 20000 --preset small --reference prepared --no-fcd \
        --set sample.n=2000 --reconstruct 2000      # a quick look on a CPU
    python benchmarks/moses.py --model moses --reconstruct 10000 --workdir runs/moses-shipped
                                                    # the row of a trained (or shipped) model

The recipe is ``pipelines/moses.yaml`` (prep of the MOSES train set, the ``default`` model,
30,000 samples from the fitted prior, scoring against the MOSES test and scaffold-test sets
with novelty against the MOSES train set). Each invocation runs the stages still to do until
``--minutes`` are spent; training runs in a child process that is stopped at the deadline and
resumes from its last checkpoint next time (pass the same options to every invocation: they
are part of the stages' cache keys).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from molvae import chem
from molvae.api import load
from molvae.data.sources import read_moses
from molvae.model.loss import active_units
from molvae.pipeline import Pipeline, load_pipeline, run_pipeline

RECIPE = Path(__file__).resolve().parents[1] / "pipelines" / "moses.yaml"
COLUMNS = ("valid", "unique@1000", "unique@10000", "FCD/Test", "FCD/TestSF", "SNN/Test",
           "SNN/TestSF", "Frag/Test", "Frag/TestSF", "Scaf/Test", "Scaf/TestSF", "IntDiv",
           "IntDiv2", "Filters", "Novelty")
# the published rows the issue quotes (MOSES README); other cells are not quoted here
PUBLISHED = {
    "VAE (MOSES)": {"valid": 0.977, "FCD/Test": 0.099, "SNN/Test": 0.626, "Frag/Test": 0.999,
                    "Scaf/Test": 0.939, "IntDiv": 0.856, "Novelty": 0.695},
    "CharRNN (MOSES)": {"FCD/Test": 0.073, "Novelty": 0.842},
    "JTN-VAE (MOSES)": {"valid": 1.0, "FCD/Test": 0.395, "Novelty": 0.914},
}
STAGES = ("prep", "train", "sample", "score")
TARGETS = {"valid": 1.0, "FCD/Test": 0.07, "Novelty": 0.90, "SNN/Test": 0.60}


def recipe(args: argparse.Namespace) -> tuple[Pipeline, list[str]]:
    """pipelines/moses.yaml's prep, train, sample and score with this run's overrides, its
    stage folders under ``--workdir`` (a copy of the recipe is written there)."""
    spec = yaml.safe_load(RECIPE.read_text())
    spec["workdir"] = args.workdir
    stages = ("sample", "score") if args.model else STAGES
    spec["stages"] = {k: v for k, v in spec["stages"].items() if k in stages}
    if args.model:  # a trained model: its samples and score only
        spec["stages"]["sample"]["model"] = args.model
    if args.reference == "prepared":  # the pipeline then links score to prep's test split
        spec["stages"]["score"].pop("reference", None)
    local = Path(args.workdir) / "moses.yaml"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(yaml.safe_dump(spec, sort_keys=False))
    overrides = [f"score.fcd={'false' if args.no_fcd else 'true'}", *args.set]
    if not args.model:
        overrides += [f"train.preset={args.preset}", f"train.epochs={args.epochs}",
                      f"train.checkpoint_every={args.checkpoint_every}"]
    if args.max_train:
        overrides.append(f"prep.limit={args.max_train}")
    if args.batch_size:
        overrides.append(f"train.batch_size={args.batch_size}")
    return load_pipeline(local, overrides), overrides


def train_until(pipeline: Pipeline, overrides: list[str], deadline: float,
                track: bool) -> bool:
    """Run (or resume) the train stage in a child process until done or the deadline."""
    command = [sys.executable, "-m", "molvae.cli", "run", str(pipeline.source), "--only",
               "train", *[f"--set={o}" for o in overrides],
               *(["--no-track"] if not track else [])]
    remaining = deadline - time.monotonic()
    if remaining < 30:
        return False
    try:
        subprocess.run(command, check=True, timeout=remaining)
    except subprocess.TimeoutExpired:
        print("train: deadline reached; rerun this command to resume from the checkpoint")
        return False
    return True


def reconstruction(model: str, limit: int, seed: int, device: str) -> dict[str, float]:
    """Greedy reconstruction from μ of MOSES test molecules, and active units over them."""
    model = load(model, device)
    smiles = [s for s in map(chem.canonical_smiles, read_moses("test")["smiles"]) if s]
    rng = np.random.default_rng(seed)
    chosen = [smiles[i] for i in rng.permutation(len(smiles))[:limit]]
    mu, _ = model.encode(chosen)
    rebuilt = model.reconstruct(chosen)
    exact = np.mean([a == b for a, b in zip(rebuilt, chosen, strict=True)])
    return {"reconstruction": float(exact), "n_reconstructed": len(chosen),
            "active_units": active_units(mu[np.isfinite(mu).all(axis=1)]),
            "latent_dim": int(model.latent_dim)}


def table(ours: dict[str, float], label: str) -> str:
    """Our row beside the published ones, in the MOSES README's columns."""
    header = f"| model | {' | '.join(COLUMNS)} |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in {**PUBLISHED, label: ours}.items():
        cells = [f"{row[c]:.3f}" if row.get(c) is not None else "—" for c in COLUMNS]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/moses-protocol")
    parser.add_argument("--minutes", type=float, default=9.0, help="stop this step after this "
                        "long (a lent GPU runs one command for at most 10 minutes)")
    parser.add_argument("--max-train", type=int, default=None, help="only the first N MOSES "
                        "training molecules (a quick look on a CPU)")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--reconstruct", type=int, default=None, help="MOSES test molecules "
                        "reconstructed (default: all of them)")
    parser.add_argument("--reference", default="moses", choices=["moses", "prepared"],
                        help="score against the MOSES test sets, or (quick look) the prepared "
                        "held-out split (the MOSES reference statistics take long on a CPU)")
    parser.add_argument("--no-fcd", action="store_true", help="skip FCD (its reference "
                        "statistics take ~15 CPU minutes once)")
    parser.add_argument("--model", help="score this trained model (a folder or a shipped "
                        "model's name) instead of preparing and training one")
    parser.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-track", action="store_true")
    args = parser.parse_args()

    deadline = time.monotonic() + 60 * args.minutes
    pipeline, overrides = recipe(args)
    stages = {s.name: s for s in pipeline.stages}
    track = not args.no_track
    if not args.model and not stages["prep"].done:
        run_pipeline(pipeline, only="prep", track=track)
    if not args.model and not stages["train"].done and \
            not train_until(pipeline, overrides, deadline, track):
        return
    for name in ("sample", "score"):
        if not stages[name].done:
            if time.monotonic() > deadline:
                print(f"{name}: no time left in this step; rerun to continue")
                return
            run_pipeline(pipeline, only=name, track=track)
    result_file = Path(args.workdir) / "moses_row.json"
    scores = json.loads((stages["score"].folder / "metrics.json").read_text())["metrics"]
    limit = args.reconstruct or 10**9
    extra = reconstruction(args.model or str(stages["train"].folder), limit, 0, args.device)
    label = f"molvae {args.model}" if args.model else f"molvae {args.preset}" + (
        f" (first {args.max_train} MOSES molecules)" if args.max_train else "")
    result_file.write_text(json.dumps({"label": label, **scores, **extra}, indent=2))
    print(table(scores, label))
    print(f"\nreconstruction (greedy from mu, {extra['n_reconstructed']} MOSES test molecules): "
          f"{extra['reconstruction']:.3f}; active units {extra['active_units']} of "
          f"{extra['latent_dim']}")
    short = {k: (scores.get(k), v) for k, v in TARGETS.items()}
    print("targets: " + ", ".join(f"{k} {'n/a' if s is None else f'{s:.3f}'} (target {v})"
                                  for k, (s, v) in short.items()))
    print(f"written to {result_file}")


if __name__ == "__main__":
    main()
