"""How well a density over the latent space can fit a trained model's codes: the KL term
E_x KL(q(z|x) || p) on held-out training molecules for N(0, I), one fitted Gaussian and
Gaussian mixtures (``molvae.model.mixture_prior``, fitted by Adam to posterior draws).

    python benchmarks/code_density.py --model moses --data runs/campaign/prepared

The KL term is I(x; z) + KL(q(z) || p), and I(x; z) cannot exceed log N for N training
molecules, so whatever a smooth density leaves above log N is the distance between it and the
aggregate posterior q(z): how much of what the prior samples lies where no molecule's code
is. ``log_n`` is printed beside the rows for that comparison.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_recipe import posterior_codes

from molvae.api import load
from molvae.model.mixture_prior import MixturePrior, kl_by_draw

BATCH = 256


def kl_term(log_prob: Callable[[torch.Tensor], torch.Tensor], mu: torch.Tensor,
            logvar: torch.Tensor) -> float:
    """Mean KL(q(z|x) || p) over the molecules, from one draw of each posterior."""
    with torch.no_grad():
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return float(kl_by_draw(log_prob, logvar, z).mean())


def fitted_mixture(mu: torch.Tensor, logvar: torch.Tensor, components: int, steps: int,
                   lr: float) -> MixturePrior:
    """A mixture started at ``components`` molecules' widened posteriors, then fitted to
    posterior draws by Adam."""
    prior = MixturePrior(components, mu.shape[1])
    prior.start_at(mu[:components], logvar[:components])
    optimizer = torch.optim.Adam(prior.parameters(), lr=lr)
    for _ in range(steps):
        rows = torch.randint(0, len(mu), (BATCH,))
        z = mu[rows] + torch.randn(BATCH, mu.shape[1]) * (0.5 * logvar[rows]).exp()
        loss = -prior.log_prob(z).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return prior


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="moses", help="a model folder or a shipped name")
    parser.add_argument("--data", type=Path, required=True,
                        help="the model's prepared folder (train.parquet)")
    parser.add_argument("--molecules", type=int, default=30000,
                        help="training molecules encoded; a sixth is held out for the KL")
    parser.add_argument("--components", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--steps", type=int, default=1500, help="Adam steps per mixture")
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-4, 1e-2],
                        help="learning rates of the mixtures' fits")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = load(args.model, "cpu")
    train = pd.read_parquet(args.data / "train.parquet", columns=["selfies"])["selfies"]
    picked = train.sample(min(args.molecules, len(train)), random_state=args.seed).tolist()
    with torch.no_grad():
        mu, logvar = posterior_codes(model, picked)
    held = len(mu) // 6
    fit_mu, fit_logvar, mu, logvar = mu[held:], logvar[held:], mu[:held], logvar[:held]
    dim = mu.shape[1]
    standard = Independent(Normal(torch.zeros(dim), torch.ones(dim)), 1)
    gaussian = MultivariateNormal(fit_mu.mean(0), torch.cov(fit_mu.T) +
                                  torch.diag(fit_logvar.exp().mean(0)))
    rows = {"N(0, I)": kl_term(standard.log_prob, mu, logvar),
            "one fitted Gaussian": kl_term(gaussian.log_prob, mu, logvar)}
    for components in args.components:
        for lr in args.lrs:
            name = f"mixture of {components}, lr {lr:g}"
            prior = fitted_mixture(fit_mu, fit_logvar, components, args.steps, lr)
            rows[name] = kl_term(prior.log_prob, mu, logvar)
            print(f"{name}: {rows[name]:.2f}", flush=True)
    print(f"log N ({len(train):,} training molecules): {math.log(len(train)):.2f} nats")
    print(pd.Series(rows, name="KL term (nats)").round(2).to_string())


if __name__ == "__main__":
    main()
