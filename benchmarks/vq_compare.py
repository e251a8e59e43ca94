"""The VQ-VAE against the Gaussian VAE: one recipe, the same data, the same wall time each.

    molvae prep data/moses_sample.csv.gz --out runs/vq/data --properties none \\
        --val-fraction 0.05 --test-fraction 0.05 --workers 1
    python benchmarks/vq_compare.py --data runs/vq/data --out runs/vq --minutes 8
    python benchmarks/vq_compare.py --data runs/vq/data --out runs/vq --report   # table only

Both variants train side by side, one thread each (``molvae train --threads 1 --max-minutes
M``), with the shared recipe ``COMMON``; a run stopped by the clock is then closed with
``--resume --epochs <epochs completed>`` (its best completed epoch is the model; for the VQ
model this is when its code prior trains, and its minutes are counted apart). Then each model
is measured on the prepared test split and by samples:

* reconstruction: greedy decoding of the code of 1,000 test molecules equals the molecule, and
  its Tanimoto similarity (Morgan, radius 2) to it; NLL per token, teacher forced from the code;
* bits per molecule: the Gaussian model's KL (the rate its ELBO pays), the VQ model's
  M·log2 K (what its codes can hold) and -log2 p(codes) under its code prior (what they cost);
* 2,000 samples at seed 0 scored by ``molvae score --reference moses`` (validity,
  unique@1000, FCD/Test, SNN/Test, novelty);
* anomaly AUROC: the anomaly stage's scores of 1,000 test molecules against an
  out-of-distribution set of at most 300 molecules per category, from RDKit's shipped molecule
  files (NCI, ChEMBL series, kinase ligands, the PAINS test set): natural-product-like molecules
  (Ertl's NP-likeness > 1, RDKit Contrib), molecules outside the MOSES filters (MW > 350, or
  failing MOSES's ring, charge, element or MCF/PAINS filters) and macrocycles (a ring of 12+
  atoms: the few in those files plus rings enumerated from crown-ether, lactone, lactam,
  peptide and cyclophane units). AUROC over all of them (a molecule with tokens the model
  never saw scores +inf, found at once), over those the model can write (the hard part), and
  per category;
* codebook use (VQ): perplexity of the test molecules' codes, dead codes, restarts.

OUT/NAME/ holds each model and its measurements (measure.json), OUT/ood.csv the OOD set,
OUT/vq_compare.md the table. Wall-time comparisons hold between the runs of one invocation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from molvae import chem
from molvae.config import from_dict
from molvae.model.ops import CodeTerms, elbo_terms
from molvae.model.quantizer import codebook_usage
from molvae.model.store import load_model
from molvae.model.vq import VQVAE
from molvae.scoring.reference import moses_filter_smarts
from molvae.stages.anomaly import AnomalyConfig
from molvae.stages.anomaly import run as anomaly
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as score
from molvae.training.checkpoint import load_checkpoint

COMMON = {"preset": "small", "encoder_hidden_dim": 128, "encoder_layers": 1, "latent_dim": 64,
          "hidden_dim": 384, "batch_size": 256, "lr": 0.003, "lr_warmup_steps": 150,
          "epochs": 30, "patience": 0, "checkpoint_every": 200, "eval_samples": 200,
          "eval_molecules": 500, "seed": 0, "log_every": 10}  # the clock is read every 10 steps
VARIANTS: dict[str, dict] = {
    "gaussian": {"beta_max": 0.2, "kl_warmup_steps": 500},
    "vq": {"latent": "vq", "codes": 8, "codebook_size": 256, "commitment": 0.25,
           "code_prior_epochs": 10, "code_prior_dim": 128},
}
TEST, SAMPLES, LN2 = 1000, 2000, math.log(2)
RDKIT_FILES = ("Data/NCI/first_5K.smi", "Contrib/FreeWilson/data/CHEMBL2321810.smi",
               "Contrib/fraggle/data/ChEMBL_11265_actives.smi", "Contrib/PBF/testData/egfr.sdf",
               "Contrib/Fastcluster/testdata/cdk2.sdf",
               "Contrib/FreeWilson/data/cmet_ligands.sdf", "Data/Pains/test_data/wehi_mols.csv")
PER_CATEGORY = 300
MACROCYCLE_UNITS = ("CC", "CCO", "CC(=O)N", "CC(=O)O", "Cc2ccc(cc2)", "CC(C)", "CN(C)",
                    "NCC(=O)", "N[C@@H](C)C(=O)", "N[C@@H](Cc2ccccc2)C(=O)", "Cc2cccc(n2)")


def enumerated_macrocycles(n: int = 400, seed: int = 0) -> list[str]:
    """Rings of 12-30 atoms strung from ``MACROCYCLE_UNITS`` (seeded)."""
    rng = np.random.default_rng(seed)
    found: list[str] = []
    for _ in range(20 * n):
        units = rng.choice(MACROCYCLE_UNITS, size=int(rng.integers(3, 9)))
        body = "".join(units)
        text = f"C%99{body[1:]}%99" if body.startswith("C") else f"C%99{body}%99"
        mol = chem.to_mol(text)
        if mol is not None and 12 <= chem.largest_ring_size(mol) <= 30:
            found.append(chem.canonical_smiles(mol) or "")
        if len(set(found)) >= n:
            break
    return sorted(set(found) - {""})


def flags(options: dict) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]


def molvae(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.Popen([sys.executable, "-m", "molvae.cli", *args], env=env)


def wait(child: subprocess.Popen) -> tuple[int, float]:
    """Exit status and CPU seconds (user + system) of a child."""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage.ru_utime + usage.ru_stime


def wait_all(children: dict[str, subprocess.Popen], started: float) -> dict[str, dict]:
    """Wait for every child, as each ends: its wall minutes since ``started`` and CPU
    minutes."""
    names = {child.pid: name for name, child in children.items()}
    timing = {}
    while names:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in names:
            continue
        name = names.pop(pid)
        if os.waitstatus_to_exitcode(status):
            raise SystemExit(f"training {name} failed ({os.waitstatus_to_exitcode(status)})")
        timing[name] = {"train_wall_min": (time.perf_counter() - started) / 60,
                        "train_cpu_min": (usage.ru_utime + usage.ru_stime) / 60}
    return timing


def train_both(data: Path, out: Path, minutes: float, max_train: int | None) -> None:
    """Train the variants side by side for ``minutes`` each, then close each run."""
    base = ["train", "--data", str(data), "--threads", "1", "--no-track", "--no-log-model", "-q",
            "--allow-degenerate", "--device", "cpu",
            *([] if max_train is None else ["--max-train", str(max_train)])]
    todo = [n for n in VARIANTS if not (out / n / "timing.json").is_file()]
    started = time.perf_counter()
    children = {n: molvae(*base, "--out", str(out / n), "--max-minutes", str(minutes),
                          *flags({**COMMON, **VARIANTS[n]})) for n in todo}
    timing = wait_all(children, started)
    for name in todo:  # close the runs one at a time: the VQ model's code prior trains now
        done = load_checkpoint(out / name)["progress"]["epoch"]
        if not done:
            raise SystemExit(f"{name} completed no epoch in {minutes} minutes: give more")
        began = time.perf_counter()
        code, cpu = wait(molvae(*base, "--out", str(out / name), "--resume",
                                *flags({**COMMON, **VARIANTS[name], "epochs": done})))
        if code:
            raise SystemExit(f"closing {name} failed ({code})")
        timing[name].update(close_wall_min=(time.perf_counter() - began) / 60,
                            close_cpu_min=cpu / 60, epochs=done)
        (out / name / "timing.json").write_text(json.dumps(timing[name], indent=1))


def np_scorer():  # RDKit Contrib's NP-likeness model
    from rdkit import RDConfig

    sys.path.append(os.path.join(RDConfig.RDContribDir, "NP_Score"))
    import npscorer

    model = npscorer.readNPModel()
    return lambda mol: npscorer.scoreMol(mol, model)


def build_ood(path: Path, training: set[str]) -> pd.DataFrame:
    """The out-of-distribution set from RDKit's shipped molecule files (see the module
    docstring), one category per molecule: macrocycle, natural product-like, outside filters."""
    from rdkit import RDConfig
    from rdkit.Chem import Descriptors

    if path.is_file():
        return pd.read_csv(path)
    root = Path(RDConfig.RDDataDir).parent
    smiles: list[str] = []
    for name in RDKIT_FILES:
        file = root / name
        if file.suffix == ".sdf":
            smiles += chem.read_sdf(file)["smiles"].dropna().tolist()
        elif file.suffix == ".csv":
            smiles += pd.read_csv(file, header=None)[0].dropna().tolist()
        else:
            smiles += [line.split()[0] for line in file.read_text().splitlines() if line.strip()]
    smiles += enumerated_macrocycles()
    catalog = chem.smarts_catalog(moses_filter_smarts())  # MOSES's MCF + PAINS patterns
    np_score, rows, seen = np_scorer(), [], set()
    for text in smiles:
        mol = chem.to_mol(text)
        mol = chem.standardize_mol(mol, keep_stereo=False) if mol is not None else None
        canonical = chem.canonical_smiles(mol) if mol is not None else None
        if canonical is None or canonical in seen or canonical in training \
                or mol.GetNumHeavyAtoms() < 6:
            continue
        seen.add(canonical)
        if chem.largest_ring_size(mol) >= 12:
            category = "macrocycle"
        elif np_score(mol) > 1.0:
            category = "natural product-like"
        elif Descriptors.MolWt(mol) > 350 or not chem.passes_moses_filters(mol, catalog):
            category = "outside filters"
        else:
            continue  # could be a MOSES molecule
        rows.append({"smiles": canonical, "category": category})
    table = pd.DataFrame(rows)
    table = pd.concat([group.sample(min(len(group), PER_CATEGORY), random_state=0)
                       for _, group in table.groupby("category")])
    table = table.sort_values(["category", "smiles"]).reset_index(drop=True)
    table.to_csv(path, index=False)
    return table


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(an outside score > an inside score), ties counting half (+inf allowed)."""
    inside, outside = inside[~np.isnan(inside)], outside[~np.isnan(outside)]
    if not len(inside) or not len(outside):
        return math.nan
    greater = (outside[:, None] > inside[None, :]).mean()
    return float(greater + 0.5 * (outside[:, None] == inside[None, :]).mean())


def anomaly_aurocs(model: str, inside: list[str], ood: pd.DataFrame, folder: Path) -> dict:
    """The anomaly stage's scores (negative ELBO, NLL per token) of the in-distribution
    molecules ``inside`` and of the ``ood`` set (its tables written into ``folder``), and their
    AUROC: over all OOD molecules, over those the model can write (finite score) and per
    category (writable ones). Also used by benchmarks/anomaly_auroc.py."""
    found: dict = {}
    for which, molecules in (("in", inside), ("ood", ood["smiles"].tolist())):
        for key in ("neg_elbo", "nll_per_token"):
            anomaly(from_dict(AnomalyConfig, {
                "inputs": [str(_write(folder / f"{which}.csv", molecules))],
                "model": model, "score": key, "device": "cpu",
                "out": str(folder / f"anomaly_{which}_{key}.csv")}))
    for key in ("neg_elbo", "nll_per_token"):
        scores = pd.read_csv(folder / f"anomaly_in_{key}.csv")["score"].to_numpy(float)
        outside = pd.read_csv(folder / f"anomaly_ood_{key}.csv")["score"].to_numpy(float)
        found[f"auroc_{key}"] = auroc(scores, outside)
        writable = np.isfinite(outside)
        found[f"auroc_{key}_writable"] = auroc(scores, outside[writable])
        found["ood_writable"] = int(writable.sum())
        for category in ood["category"].unique():
            picked = (ood["category"] == category).to_numpy() & writable
            found[f"auroc_{key}_{category}"] = auroc(scores, outside[picked])
    return found


def measure(folder: Path, data: Path, ood: pd.DataFrame) -> dict:
    """Every number of the table for the model in ``folder`` (cached in measure.json)."""
    cached = folder / "measure.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    model = load_model(folder, "cpu")
    test = pd.read_parquet(data / "test.parquet")["smiles"].tolist()[:TEST]
    started = time.perf_counter()
    rebuilt = model.reconstruct(test)
    terms = elbo_terms(model, test)
    found: dict = {"reconstruction": float(np.mean([a == b for a, b in zip(rebuilt, test)])),
                   "similarity": float(np.mean([chem.similarity(a, b) if b else 0.0
                                                for a, b in zip(test, rebuilt)])),
                   "nll_per_token": float(np.nanmean(terms.nll_per_token))}
    if isinstance(terms, CodeTerms) and isinstance(model, VQVAE):
        found.update(bits_capacity=terms.bits, bits=float(np.nanmean(terms.kl)) / LN2,
                     **codebook_usage(terms.codes, model.config.codebook_size),
                     restarts=int(model.quantizer.restarts))
    else:
        found["bits"] = float(np.nanmean(terms.kl)) / LN2
    samples = model.sample(SAMPLES, seed=0)
    pd.DataFrame({"smiles": samples}).to_csv(folder / "samples.csv", index=False)
    scored = score(from_dict(ScoreConfig, {
        "generated": str(folder / "samples.csv"), "reference": "moses",
        "out": str(folder / "score"), "workers": 1, "device": "cpu", "unique_at": [1000]}))
    found.update({k: scored.metrics.get(k) for k in ("valid", "unique@1000", "FCD/Test",
                                                     "SNN/Test", "Novelty")})
    found.update(anomaly_aurocs(str(folder), test, ood, folder))
    found["measure_min"] = (time.perf_counter() - started) / 60
    cached.write_text(json.dumps(found, indent=1))
    return found


def _write(path: Path, smiles: list[str]) -> Path:
    pd.DataFrame({"smiles": smiles}).to_csv(path, index=False)
    return path


ROWS = [  # (label, key, format)
    ("training wall minutes (VAE)", "train_wall_min", "{:.1f}"),
    ("training CPU minutes (VAE)", "train_cpu_min", "{:.1f}"),
    ("closing CPU minutes (VQ: the code prior)", "close_cpu_min", "{:.1f}"),
    ("epochs", "epochs", "{:d}"),
    ("test reconstruction (greedy, exact)", "reconstruction", "{:.3f}"),
    ("test reconstruction, Tanimoto to the input", "similarity", "{:.3f}"),
    ("test NLL per token (nats)", "nll_per_token", "{:.3f}"),
    ("bits per molecule: KL / -log2 p(codes)", "bits", "{:.1f}"),
    ("bits per molecule: code capacity M·log2 K", "bits_capacity", "{:.0f}"),
    ("samples valid", "valid", "{:.3f}"),
    ("samples unique@1000", "unique@1000", "{:.3f}"),
    ("FCD/Test (lower is better)", "FCD/Test", "{:.2f}"),
    ("SNN/Test", "SNN/Test", "{:.3f}"),
    ("novelty", "Novelty", "{:.3f}"),
    ("anomaly AUROC, neg. ELBO (all OOD)", "auroc_neg_elbo", "{:.3f}"),
    ("anomaly AUROC, neg. ELBO (writable OOD)", "auroc_neg_elbo_writable", "{:.3f}"),
    ("… macrocycles (writable)", "auroc_neg_elbo_macrocycle", "{:.3f}"),
    ("… natural product-like (writable)", "auroc_neg_elbo_natural product-like", "{:.3f}"),
    ("… outside filters (writable)", "auroc_neg_elbo_outside filters", "{:.3f}"),
    ("anomaly AUROC, NLL/token (all OOD)", "auroc_nll_per_token", "{:.3f}"),
    ("anomaly AUROC, NLL/token (writable OOD)", "auroc_nll_per_token_writable", "{:.3f}"),
    ("codebook perplexity (of K)", "codebook_perplexity", "{:.1f}"),
    ("codes used / dead (test)", "codes_used", "{:.0f}"),
    ("dead-code restarts in training", "restarts", "{:d}"),
]


def table(results: dict[str, dict]) -> str:
    lines = ["| | " + " | ".join(results) + " |", "| --- |" + " --- |" * len(results)]
    for label, key, fmt in ROWS:
        cells = []
        for found in results.values():
            value = found.get(key)
            if key == "codes_used" and value is not None:
                cells.append(f"{value:.0f} / {found['dead_codes']:.0f}")
            elif value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("–")
            else:
                cells.append(fmt.format(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared folder")
    parser.add_argument("--out", type=Path, default=Path("runs/vq"))
    parser.add_argument("--minutes", type=float, default=8.0, help="training minutes each")
    parser.add_argument("--max-train", type=int, help="train on this many molecules (a smoke "
                        "test)")
    parser.add_argument("--report", action="store_true", help="measure and tabulate only")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        train_both(args.data, args.out, args.minutes, args.max_train)
    training = set(pd.read_parquet(args.data / "train.parquet")["smiles"])
    ood = build_ood(args.out / "ood.csv", training)
    print(ood["category"].value_counts().to_string())
    results = {}
    for name in VARIANTS:
        timing = json.loads((args.out / name / "timing.json").read_text())
        results[name] = {**timing, **measure(args.out / name, args.data, ood)}
    text = (f"{len(ood)} OOD molecules ({results['vq'].get('ood_writable')} writable by the VQ "
            f"model, {results['gaussian'].get('ood_writable')} by the Gaussian one; "
            f"{TEST} test molecules in distribution)\n\n{table(results)}\n")
    (args.out / "vq_compare.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
