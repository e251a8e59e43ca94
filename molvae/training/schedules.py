"""Schedules over optimizer steps: the KL weight beta and the learning-rate multiplier."""

from __future__ import annotations

import math

KL_SCHEDULES = ("linear", "cyclical", "constant")
LR_SCHEDULES = ("cosine", "constant")
MIN_LR_FACTOR = 0.05  # cosine decays to this fraction of lr


def kl_weight(step: int, schedule: str, beta_max: float, warmup_steps: int,
              cycle_steps: int) -> float:
    """beta at ``step``: linear warm-up, repeated warm-ups (cyclical), or constant."""
    if schedule == "constant" or warmup_steps == 0:
        return beta_max
    position = step % cycle_steps if schedule == "cyclical" else step
    return beta_max * min(1.0, position / warmup_steps)


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return MIN_LR_FACTOR + (1 - MIN_LR_FACTOR) * 0.5 * (1 + math.cos(math.pi * progress))
