"""benchmarks/code_density.py: the KL term of a density over a model's codes."""

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Independent, Normal

from benchmarks.code_density import kl_term, main


def test_the_kl_term_against_n01_is_the_closed_form() -> None:
    torch.manual_seed(0)
    mu, logvar = torch.randn(1, 3).expand(20000, 3), torch.randn(1, 3).expand(20000, 3)
    standard = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    exact = 0.5 * (mu[0].pow(2) + logvar[0].exp() - 1 - logvar[0]).sum()
    assert kl_term(standard.log_prob, mu, logvar) == pytest.approx(float(exact), abs=0.05)


def test_it_prints_a_row_per_density(tiny_model: Path, prepared_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    main(["--model", str(tiny_model), "--data", str(prepared_dir), "--molecules", "60",
          "--components", "4", "--steps", "3", "--lrs", "0.01"])
    out = capsys.readouterr().out
    assert f"log N (80 training molecules): {math.log(80):.2f} nats" in out
    for row in ("N(0, I)", "one fitted Gaussian", "mixture of 4, lr 0.01"):
        assert row in out
