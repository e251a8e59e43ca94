"""Which training recipe buys the most model quality per CPU-hour: train candidate recipes
for the same wall time each and record their learning curves.

    python benchmarks/cpu_recipe.py --data PREPARED --out runs/recipes \
        --recipes beta0.05 beta0.2 --minutes 24 --eval-every 8 --jobs 2
    python benchmarks/cpu_recipe.py --out runs/recipes --report      # table and plot only

PREPARED is ``molvae prep moses:train --properties heavy_atoms --val-fraction 0.005
--test-fraction 0.005`` (the whole MOSES training set; the MOSES test sets stay held out).
Each recipe trains with ``molvae train --threads 1`` in chunks of ``--eval-every`` minutes
(``--max-minutes``, then ``--resume``), and after each chunk its checkpoint is measured on
the prepared validation split and by 2,000 samples scored with ``molvae score --reference
moses`` (molvae's MOSES-equal metrics, FCD on), drawn from three fitted priors: one Gaussian
(the default of a trained model), and the aggregate posterior of 4,096 validation molecules at
spread 1 and 2 (``fit_posterior_prior``). Every point lands in OUT/NAME/curve.csv at once, so a
killed study resumes where it stopped; OUT/recipes.md and OUT/recipes.png gather them, and
OUT/beta.md and OUT/beta.png set the recipes that differ only in beta (``beta0.05`` ...
``beta1``) against beta: the beta-VAE trade-off. With ``--jobs 2`` two recipes train side by
side on one thread each: wall-time comparisons hold between recipes of one invocation, not
across machines.

The learning-curve columns: minutes of training, molecules seen, validation NLL per token
(teacher forcing from the posterior mean), KL per molecule, greedy reconstruction from the
mean, active units, and of the samples validity, uniqueness, FCD/Test, SNN/Test, Filters,
novelty, aromatic and aliphatic rings per molecule (SELFIES models tend to write too few
aromatic rings), beside the same ring counts of MOSES test molecules.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from molvae import chem
from molvae.config import from_dict
from molvae.data.batching import pad_batch
from molvae.data.sources import read_moses
from molvae.model.likelihood import token_nll
from molvae.model.loss import active_units, kl_divergence
from molvae.model.store import model_from_state
from molvae.model.vae import SelfiesVAE
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as score
from molvae.training.checkpoint import load_checkpoint

# what every recipe shares: MOSES-sized vocabulary, 10 epochs of cosine schedule (so the
# winner continues as the long run with --resume), seeded
COMMON = {"preset": "small", "encoder_hidden_dim": 128, "encoder_layers": 1, "latent_dim": 64,
          "batch_size": 256, "lr": 0.003, "lr_warmup_steps": 150, "kl_warmup_steps": 2000,
          "epochs": 10, "patience": 0, "checkpoint_every": 500, "eval_samples": 500,
          "eval_molecules": 500, "seed": 0}
RECIPES: dict[str, dict] = {
    # the calibration recipe of the model issue: a strong decoder, a weak KL weight
    "beta0.05": {"hidden_dim": 384, "beta_max": 0.05},
    "beta0.2": {"hidden_dim": 384, "beta_max": 0.2},
    "beta0.5": {"hidden_dim": 384, "beta_max": 0.5},
    "beta1": {"hidden_dim": 384, "beta_max": 1.0},
    "beta0.2-wd0.25": {"hidden_dim": 384, "beta_max": 0.2, "word_dropout": 0.25},
    "beta0.2-free0.25": {"hidden_dim": 384, "beta_max": 0.2, "free_bits": 0.25},
    "beta0.2-dec512": {"hidden_dim": 512, "beta_max": 0.2},
    "beta0.2-dec256x2": {"hidden_dim": 256, "num_layers": 2, "beta_max": 0.2},
    "beta0.2-batch128": {"hidden_dim": 384, "beta_max": 0.2, "batch_size": 128, "lr": 0.0021},
    # randomized-SMILES augmentation: every epoch a new spelling of each molecule
    "beta0.2-randomized": {"hidden_dim": 384, "beta_max": 0.2, "randomize_smiles": True},
}
SAMPLES, VAL_MOLECULES, POSTERIORS, SPREADS = 2000, 2000, 4096, (1.0, 2.0)
SAMPLE_METRICS = ("valid", "unique@1000", "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
                  "IntDiv", "Filters", "Novelty")


def train_flags(recipe: dict) -> list[str]:
    """``molvae train`` options of a recipe (COMMON first, the recipe's own win)."""
    flags = []
    for key, value in {**COMMON, **recipe}.items():
        flag = f"--{key.replace('_', '-')}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags += [flag, str(value)]
    return flags


def ring_counts(smiles: list[str]) -> dict[str, float]:
    """Aromatic and aliphatic rings per molecule, the share of rings of size 5 and 6, and the
    broken rings per molecule: rings with two or more double bonds that did not come out
    aromatic, what a SELFIES decoder writes when one token of an aromatic ring goes wrong
    (MOSES's own molecules have almost none)."""
    aromatic, aliphatic, broken, sizes = [], [], [], []
    for text in smiles:
        mol = chem.to_mol(text)
        if mol is None:
            continue
        info = mol.GetRingInfo()
        aromatic.append(rdMolDescriptors.CalcNumAromaticRings(mol))
        aliphatic.append(rdMolDescriptors.CalcNumAliphaticRings(mol))
        bonds = [[mol.GetBondWithIdx(i) for i in ring] for ring in info.BondRings()]
        broken.append(sum(not any(b.GetIsAromatic() for b in ring) and
                          sum(b.GetBondType() == Chem.BondType.DOUBLE for b in ring) >= 2
                          for ring in bonds))
        sizes += [len(ring) for ring in info.AtomRings()]
    sizes = np.asarray(sizes)
    return {"aromatic_rings": float(np.mean(aromatic)),
            "aliphatic_rings": float(np.mean(aliphatic)),
            "broken_rings": float(np.mean(broken)),
            "ring5_share": float(np.mean(sizes == 5)) if len(sizes) else np.nan,
            "ring6_share": float(np.mean(sizes == 6)) if len(sizes) else np.nan}


def score_samples(model: SelfiesVAE, folder: Path, seed: int) -> dict[str, float]:
    """MOSES metrics of ``SAMPLES`` molecules from the model's fitted prior, and ring counts."""
    samples = model.sample(SAMPLES, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"smiles": samples}).to_csv(folder / "samples.csv", index=False)
    scored = score(from_dict(ScoreConfig, {
        "generated": str(folder / "samples.csv"), "reference": "moses",
        "out": str(folder / "score"), "workers": 1, "device": "cpu", "unique_at": [1000],
        "grid_size": 24}))
    return {**{k: scored.metrics.get(k) for k in SAMPLE_METRICS},
            **ring_counts([s for s in samples if s])}


def latent_r2(mu: np.ndarray, smiles: list[str]) -> dict[str, float]:
    """5-fold cross-validated R² of logP and QED predicted from the posterior means by kernel
    ridge regression (RBF on standardized codes): how much property a latent space keeps."""
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    panel = pd.DataFrame([chem.smiles_properties(s) for s in smiles])
    model = make_pipeline(StandardScaler(), KernelRidge(alpha=0.1, kernel="rbf",
                                                        gamma=1.0 / mu.shape[1]))
    return {f"r2_{name}": float(cross_val_score(model, mu, panel[name], cv=5,
                                                scoring="r2").mean()) for name in ("logp", "qed")}


@torch.no_grad()
def posterior_codes(model: SelfiesVAE, selfies: list[str], batch: int = 500
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances [N, latent_dim] of SELFIES strings."""
    ids = [model.vocab.encode(s) for s in selfies]
    mu, logvar = [], []
    for start in range(0, len(ids), batch):
        batch_mu, batch_logvar = model.encode_tokens(*pad_batch(ids[start:start + batch],
                                                                model.vocab.pad_id))
        mu.append(batch_mu)
        logvar.append(batch_logvar)
    return torch.cat(mu), torch.cat(logvar)


@torch.no_grad()
def validation_codes(model: SelfiesVAE, data: Path) -> tuple[pd.DataFrame, torch.Tensor,
                                                             torch.Tensor, float]:
    """The prepared validation split, its posterior means and log-variances, and the NLL per
    token of its first ``VAL_MOLECULES`` (teacher forcing from the means)."""
    val = pd.read_parquet(data / "val.parquet", columns=["smiles", "selfies"])
    mu, logvar = posterior_codes(model, val["selfies"].tolist())
    nll, tokens_seen = 0.0, 0
    for start in range(0, min(len(val), VAL_MOLECULES), 500):
        tokens, lengths = pad_batch([model.vocab.encode(s) for s in
                                     val["selfies"][start:start + 500]], model.vocab.pad_id)
        logits = model.teacher_forced_logits(mu[start:start + 500], tokens)
        nll += float(token_nll(logits, tokens, model.vocab.pad_id).sum())
        tokens_seen += int((lengths - 1).sum())
    return val, mu, logvar, nll / tokens_seen


@torch.no_grad()
def measure(run_dir: Path, data: Path, seed: int = 0) -> dict[str, float]:
    """Validation and sample metrics of the checkpoint in ``run_dir``: samples from one
    Gaussian fitted to the codes of the whole validation split, and from the aggregate
    posterior of ``POSTERIORS`` of its molecules at each of ``SPREADS``."""
    checkpoint = load_checkpoint(run_dir)
    model = model_from_state(checkpoint["model"]).eval()
    val, mu, logvar, nll = validation_codes(model, data)
    kl = kl_divergence(mu, logvar).sum(1).mean()
    rebuilt = model.decode(mu[:1000])
    progress = checkpoint["progress"]
    row = {
        "step": progress["step"],
        "molecules_seen": progress["step"] * checkpoint["train_config"]["batch_size"],
        "val_nll_per_token": nll, "val_kl": float(kl),
        "reconstruction": float(np.mean([a == b for a, b in zip(rebuilt, val["smiles"])])),
        "active_units": active_units(mu.numpy()),
    }
    row.update(latent_r2(mu[:VAL_MOLECULES].numpy(), val["smiles"][:VAL_MOLECULES].tolist()))
    model.fit_prior(mu.numpy())
    row.update(score_samples(model, run_dir / "gaussian", seed))
    for spread in SPREADS:
        model.refit_prior(mu.numpy(), logvar.numpy(), f"posteriors:{POSTERIORS}:{spread}", seed)
        row.update({f"{k} post{spread:g}": v for k, v in
                    score_samples(model, run_dir / f"posterior{spread:g}", seed).items()
                    if k in ("valid", "FCD/Test", "SNN/Test", "Filters", "Novelty",
                             "aromatic_rings")})
    return row


def run_recipe(name: str, data: Path, out: Path, minutes: float, eval_every: float) -> Path:
    """Train ``name`` until ``minutes`` of training are done, measuring after each chunk."""
    run_dir = out / name
    run_dir.mkdir(parents=True, exist_ok=True)
    curve_path = run_dir / "curve.csv"
    curve = pd.read_csv(curve_path) if curve_path.is_file() else pd.DataFrame()
    done = float(curve["minutes"].max()) if len(curve) else 0.0
    torch.set_num_threads(1)
    while done < minutes - 1e-6:
        chunk = min(eval_every, minutes - done)
        command = [sys.executable, "-m", "molvae.cli", "train", "--data", str(data), "--out",
                   str(run_dir), "--threads", "1", "--no-track", "--no-log-model", "-q",
                   "--allow-degenerate",  # a study records a collapse, it does not stop on it
                   "--max-minutes", str(chunk), *train_flags(RECIPES[name]),
                   *(["--resume"] if (run_dir / "checkpoint.pt").is_file() else [])]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        done += chunk
        started = time.perf_counter()
        row = {"recipe": name, "minutes": done, **measure(run_dir, data)}
        row["measure_seconds"] = time.perf_counter() - started
        curve = pd.concat([curve, pd.DataFrame([row])], ignore_index=True)
        curve.to_csv(curve_path, index=False)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    return curve_path


def warm_caches(out: Path) -> dict[str, float]:
    """Score a few MOSES molecules once (reference statistics and the canonical MOSES train set
    are cached then, not raced by parallel recipes); return ring counts of MOSES test."""
    test = read_moses("test")["smiles"].sample(n=SAMPLES, random_state=0).tolist()
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"smiles": test[:50]}).to_csv(out / "warm.csv", index=False)
    score(from_dict(ScoreConfig, {"generated": str(out / "warm.csv"), "reference": "moses",
                                  "out": str(out / "warm"), "workers": 1, "device": "cpu",
                                  "unique_at": [10]}))
    return ring_counts(test)


def report(out: Path, reference: dict[str, float] | None) -> pd.DataFrame:
    """OUT/recipes.md (the last point of every recipe) and OUT/recipes.png (the curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = pd.concat([pd.read_csv(p) for p in sorted(out.glob("*/curve.csv"))],
                       ignore_index=True)
    last = curves.sort_values("minutes").groupby("recipe").tail(1).set_index("recipe")
    lines = ["| recipe | min | molecules | NLL/token | KL | recon | AU | valid | FCD/Test | "
             "SNN/Test | Filters | novelty | FCD/Test, posteriors ×1 | novelty | "
             "FCD/Test, posteriors ×2 | novelty | arom. rings | aliph. rings |",
             "|" + "---|" * 18]
    for name, row in last.sort_values("FCD/Test").iterrows():
        lines.append(f"| {name} | {row['minutes']:.0f} | {row['molecules_seen']:,.0f} | "
                     f"{row['val_nll_per_token']:.3f} | {row['val_kl']:.1f} | "
                     f"{row['reconstruction']:.3f} | {row['active_units']:.0f} | "
                     f"{row['valid']:.3f} | {row['FCD/Test']:.2f} | {row['SNN/Test']:.3f} | "
                     f"{row['Filters']:.3f} | {row['Novelty']:.3f} | "
                     f"{row['FCD/Test post1']:.2f} | {row['Novelty post1']:.3f} | "
                     f"{row['FCD/Test post2']:.2f} | {row['Novelty post2']:.3f} | "
                     f"{row['aromatic_rings']:.2f} | {row['aliphatic_rings']:.2f} |")
    if reference:
        lines.append(f"| MOSES test (2,000) | | | | | | | | | | | | | | | | "
                     f"{reference['aromatic_rings']:.2f} | {reference['aliphatic_rings']:.2f} |")
    (out / "recipes.md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    for name, curve in curves.groupby("recipe"):
        for ax, key in zip(axes[:3], ("val_nll_per_token", "reconstruction", "FCD/Test")):
            # molecules seen, not minutes: recipes of two invocations shared the cores with
            # different loads, and one invocation's recipes train side by side
            line, = ax.plot(curve["molecules_seen"], curve[key], marker="o", label=name)
            ax.set_xlabel("training molecules seen")
            ax.set_title(key)
        axes[2].plot(curve["molecules_seen"], curve["FCD/Test post1"], marker="x", linestyle="--",
                     color=line.get_color())
        axes[2].set_title("FCD/Test: Gaussian prior (o), posteriors ×1 (x, dashed)")
        axes[3].plot(curve["reconstruction"], curve["FCD/Test"], marker="o", label=name)
    axes[3].set_xlabel("reconstruction")
    axes[3].set_title("FCD/Test against reconstruction")
    axes[2].set_yscale("log")
    axes[3].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "recipes.png", dpi=100)
    print((out / "recipes.md").read_text())
    return curves


def beta_sweep(curves: pd.DataFrame, out: Path) -> pd.DataFrame | None:
    """OUT/beta.md and OUT/beta.png: the recipes that differ only in beta (``betaX``),
    compared at the longest training time they all reached, against beta."""
    import matplotlib.pyplot as plt

    sweep = curves[curves["recipe"].str.fullmatch(r"beta[0-9.]+")].copy()
    if sweep["recipe"].nunique() < 2:
        return None
    minutes = sweep.groupby("recipe")["minutes"].max().min()
    sweep = sweep[np.isclose(sweep["minutes"], minutes)].copy()
    sweep["beta"] = sweep["recipe"].str.removeprefix("beta").astype(float)
    sweep = sweep.sort_values("beta")
    panels = {"reconstruction": ["reconstruction"], "active units": ["active_units"],
              "FCD/Test": ["FCD/Test", "FCD/Test post1"], "validity": ["valid"],
              "novelty": ["Novelty", "Novelty post1"], "latent R²": ["r2_logp", "r2_qed"]}
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (title, keys) in zip(axes, panels.items()):
        for key in keys:
            ax.plot(sweep["beta"], sweep[key], marker="o", label=key)
        ax.set_xscale("log")
        ax.set_xlabel("beta (KL weight on the per-molecule sum)")
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle(f"the same recipe at several beta, {minutes:g} training minutes each")
    fig.tight_layout()
    fig.savefig(out / "beta.png", dpi=100)
    columns = ["beta", "molecules_seen", "reconstruction", "active_units", "val_kl", "valid",
               "FCD/Test", "FCD/Test post1", "Novelty post1", "r2_logp", "r2_qed"]
    rows = [" | ".join(f"{v:,.0f}" if key == "molecules_seen" else f"{v:.3g}"
                       for key, v in zip(columns, row)) for row in sweep[columns].to_numpy()]
    header = [" | ".join(columns), " | ".join(["---"] * len(columns))]
    (out / "beta.md").write_text("\n".join([*header, *rows]) + "\n")
    return sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="prepared MOSES folder (see the docstring)")
    parser.add_argument("--out", type=Path, default=Path("runs/recipes"))
    parser.add_argument("--recipes", nargs="+", default=["beta0.05", "beta0.2"],
                        choices=sorted(RECIPES))
    parser.add_argument("--minutes", type=float, default=24, help="training minutes per recipe")
    parser.add_argument("--eval-every", type=float, default=8, help="minutes between points")
    parser.add_argument("--jobs", type=int, default=2, help="recipes trained side by side")
    parser.add_argument("--report", action="store_true", help="only write the table and plot")
    args = parser.parse_args()
    reference_path = args.out / "moses_test_rings.json"
    if not args.report:
        if args.data is None:
            parser.error("--data is required unless --report")
        if not reference_path.is_file():
            reference_path.write_text(json.dumps(warm_caches(args.out)))
        with ProcessPoolExecutor(args.jobs) as pool:
            for done in pool.map(run_recipe, args.recipes, [args.data] * len(args.recipes),
                                 [args.out] * len(args.recipes),
                                 [args.minutes] * len(args.recipes),
                                 [args.eval_every] * len(args.recipes)):
                print(f"done: {done}", flush=True)
    curves = report(args.out, json.loads(reference_path.read_text())
                    if reference_path.is_file() else None)
    beta_sweep(curves, args.out)


if __name__ == "__main__":
    main()
