"""The operator bandit: shares follow recent success, every arm keeps its floor."""

from __future__ import annotations

import numpy as np
import pytest

from molvae.optim.bandit import OperatorBandit


def test_shares_follow_the_arm_that_succeeds_and_keep_the_floor() -> None:
    bandit = OperatorBandit(("a", "b", "c"), np.random.default_rng(0), floor=0.05)
    for _ in range(10):
        bandit.new_round(bar=0.5)
        bandit.reward("a", np.array([0.9] * 8 + [0.1] * 2))  # 8 of 10 beat the bar
        bandit.reward("b", np.array([0.1] * 10))
        bandit.reward("c", np.array([np.nan] * 10))  # no solution is no success
    counts = [bandit.allot(64) for _ in range(50)]
    assert all(sum(c.values()) == 64 for c in counts)
    assert all(c["a"] > c["b"] and c["a"] > c["c"] for c in counts)
    assert min(min(c.values()) for c in counts) >= int(0.05 * 64)


def test_old_rounds_fade() -> None:
    bandit = OperatorBandit(("a", "b"), np.random.default_rng(0), discount=0.5)
    bandit.new_round(bar=0.0)
    bandit.reward("a", np.ones(100))
    for _ in range(10):
        bandit.new_round(bar=0.0)
    assert bandit.trials["a"] < 0.1 and bandit.wins["a"] < 0.1


def test_a_floor_above_the_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="floor"):
        OperatorBandit(("a", "b", "c"), np.random.default_rng(0), floor=0.4)
