"""Which prior to sample a trained model from: its samples from priors of different kinds
and sizes, scored side by side.

    python benchmarks/priors.py --model moses --data runs/campaign/prepared \
        --priors val train:16384 train:32768 flow:100000 flow:100000:0.8 --samples 10000

``val`` and ``train:N`` are equal mixtures of molecules' posteriors N(mu_i, sigma_i^2)
(``fit_posterior_prior``): those of the whole prepared validation split, or of N random
molecules of the training split. A sample drawn near a molecule's code often decodes to that
molecule, so the more molecules the mixture holds, the fewer samples repeat one (uniqueness);
each one also makes the prior file bigger (``prior_mb``: float16 means and scales, as
shipped). ``flow:N[:T]`` is a masked autoregressive flow (zuko) fitted to the posteriors of N
random training molecules, its base noise scaled by T (default 1): a density over the whole
latent space rather than a mixture of molecules, so its samples are rarely training molecules;
whether the decoder writes good molecules between the codes is what it measures. ``own`` is
the prior the model was saved with (a mixture trained with it: ``molvae train --prior
learned:K``; its ``molecules`` column counts the mixture's components).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_recipe import posterior_codes

from molvae.api import load
from molvae.config import from_dict
from molvae.model.store import model_from_state
from molvae.model.vae import SelfiesVAE
from molvae.stages.score import ScoreConfig
from molvae.stages.score import run as score
from molvae.training.checkpoint import CHECKPOINT_FILE, load_checkpoint

METRICS = ("valid", "FCD/Test", "SNN/Test", "Filters", "Novelty", "KL_score")
FLOW_EPOCHS, FLOW_BATCH = 20, 512


def parse_prior(prior: str) -> tuple[str, int, float]:
    """(kind, molecules, temperature) of ``own``, ``val``, ``train:N`` or ``flow:N[:T]``."""
    kind, *values = prior.split(":")
    try:
        size = int(values[0]) if values else 0
        temperature = float(values[1]) if len(values) > 1 else 1.0
    except ValueError:
        size = 0
    arity = {"own": (0,), "val": (0,), "train": (1,), "flow": (1, 2)}.get(kind, ())
    if len(values) not in arity or (kind not in ("own", "val") and size < 1) or \
            not temperature > 0:
        raise SystemExit("a prior is 'own', 'val', 'train:N' or 'flow:N[:T]' (N a whole "
                         f"number > 0, T > 0), got '{prior}'")
    return kind, size, temperature


def prior_codes(model: torch.nn.Module, data: Path, prior: str, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The posterior means and log-variances of the molecules a prior spec names."""
    kind, size, _ = parse_prior(prior)
    if kind == "val":
        selfies = pd.read_parquet(data / "val.parquet", columns=["selfies"])["selfies"]
    else:
        train = pd.read_parquet(data / "train.parquet", columns=["selfies"])["selfies"]
        selfies = train.sample(min(size, len(train)), random_state=seed)
    return posterior_codes(model, selfies.tolist())


def flow_samples(mu: torch.Tensor, logvar: torch.Tensor, n: int, temperature: float,
                 seed: int) -> torch.Tensor:
    """``n`` codes from a masked autoregressive flow fitted to the posteriors N(mu, sigma^2)
    (a fresh draw of each molecule's code every epoch), in coordinates standardized by the
    means' spread."""
    import zuko  # only this prior needs it

    torch.manual_seed(seed)
    center, spread, sigma = mu.mean(0), mu.std(0) + 1e-3, (0.5 * logvar).exp()
    flow = zuko.flows.MAF(features=mu.shape[1], transforms=5, hidden_features=(256, 256))
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    batches = [torch.randperm(len(mu)).split(FLOW_BATCH) for _ in range(FLOW_EPOCHS)]
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, sum(map(len, batches)))
    for rows in (row for epoch in batches for row in epoch):
        z = (mu[rows] + sigma[rows] * torch.randn_like(mu[rows]) - center) / spread
        loss = -flow().log_prob(z).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        noise = torch.randn(n, mu.shape[1]) * temperature
        return flow().transform.inv(noise) * spread + center


def prior_samples(model: SelfiesVAE, data: Path, prior: str, n: int, seed: int
                  ) -> tuple[list[str | None], int]:
    """``n`` SMILES sampled from the prior ``prior`` names, and the molecules it was fitted to."""
    kind, _, temperature = parse_prior(prior)
    if kind == "own":
        return model.sample(n, seed=seed), len(model.mixture_weights)
    with torch.no_grad():
        mu, logvar = prior_codes(model, data, prior, seed)
    if kind == "flow":
        z = flow_samples(mu, logvar, n, temperature, seed)
        return model.decode(z, greedy=False, seed=seed), len(mu)
    model.fit_posterior_prior(mu.numpy(), logvar.numpy(), size=len(mu), seed=seed)
    return model.sample(n, seed=seed), len(mu)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses",
                        help="a model folder, a shipped name, or a run's checkpoint.pt (the "
                        "weights of a run stopped mid-epoch)")
    parser.add_argument("--data", type=Path, required=True,
                        help="the model's prepared folder (train.parquet, val.parquet)")
    parser.add_argument("--priors", nargs="+", default=["val", "train:16384"],
                        help="own, val, train:N or flow:N[:T] (see above)")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=Path("runs/priors"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    checkpoint = Path(args.model)
    model = model_from_state(cast(dict, load_checkpoint(checkpoint.parent))["model"]) \
        if checkpoint.name == CHECKPOINT_FILE else load(args.model, "cpu")
    rows = {}
    for prior in args.priors:
        smiles, molecules = prior_samples(model, args.data, prior, args.samples, args.seed)
        folder = args.out / prior.replace(":", "-")
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"smiles": smiles}).to_csv(folder / "samples.csv", index=False)
        metrics = score(from_dict(ScoreConfig, {
            "generated": str(folder / "samples.csv"), "reference": "moses",
            "out": str(folder / "score"), "workers": 1, "device": "cpu",
            "unique_at": [args.samples], "grid_size": 24})).metrics
        rows[prior] = {"molecules": molecules,
                       "prior_mb": None if parse_prior(prior)[0] == "flow" else
                       2 * molecules * model.latent_dim * 2 / 1e6,
                       f"unique@{args.samples}": metrics.get(f"unique@{args.samples}"),
                       **{k: metrics.get(k) for k in METRICS}}
        print(prior, json.dumps(rows[prior]), flush=True)
    print(pd.DataFrame.from_dict(rows, orient="index").round(3).to_string())


if __name__ == "__main__":
    main()
