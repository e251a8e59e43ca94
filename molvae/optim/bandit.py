"""Where a batch's calls go: Thompson sampling over the operators that propose molecules.

Why: which operator pays differs by objective and by stage of a run (the fine-tuned decoder
finds a rediscovery's missing group sooner, the GA's crossover pays on objectives that weigh
properties, and late in a run small edits of the best molecules may pay most), so a fixed mix is
right for none of them. Each operator's rate of success (a molecule that enters the best found
so far) has a Beta posterior; each batch's shares follow rates drawn from those posteriors
(probability matching), with a floor so no operator stops being measured, and old rounds count
less, so the shares follow the run as it moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class OperatorBandit:
    """Shares of each batch among ``arms`` by Thompson sampling on their recent success rates.

    Args:
        arms: the operators' names.
        rng: the run's random generator (draws of the rates).
        floor: the least share of a batch each arm gets.
        discount: the weight of the previous round's counts at each new round (below 1, the
            bandit forgets old rounds).
    """

    def __init__(self, arms: Sequence[str], rng: np.random.Generator, floor: float = 0.05,
                 discount: float = 0.9) -> None:
        if floor * len(arms) > 1:
            raise ValueError(f"a floor of {floor} for {len(arms)} arms exceeds the batch")
        self.arms, self.rng, self.floor, self.discount = tuple(arms), rng, floor, discount
        self.wins = dict.fromkeys(self.arms, 0.0)
        self.trials = dict.fromkeys(self.arms, 0.0)
        self.bar = -np.inf

    def shares(self) -> dict[str, float]:
        """This round's share of each arm: its drawn success rate over the sum of them,
        squeezed above the floor."""
        rates = np.array([self.rng.beta(1 + self.wins[arm], 1 + self.trials[arm] - self.wins[arm])
                          for arm in self.arms])
        share = self.floor + (1 - self.floor * len(self.arms)) * rates / rates.sum()
        return dict(zip(self.arms, share.tolist(), strict=True))

    def allot(self, n: int) -> dict[str, int]:
        """This round's number of the ``n`` proposals for each arm (they sum to ``n``)."""
        share = self.shares()
        counts = {arm: int(share[arm] * n) for arm in self.arms}
        counts[max(share, key=share.__getitem__)] += n - sum(counts.values())
        return counts

    def new_round(self, bar: float) -> None:
        """Start a round: what was counted so far weighs ``discount``, and a success is now a
        score above ``bar``."""
        for arm in self.arms:
            self.wins[arm] *= self.discount
            self.trials[arm] *= self.discount
        self.bar = bar

    def reward(self, arm: str, scores: np.ndarray) -> None:
        """Count an arm's scored proposals as trials and those above the bar as successes."""
        self.trials[arm] += len(scores)
        self.wins[arm] += float(np.sum(np.nan_to_num(scores, nan=-np.inf) > self.bar))
