"""Learning-rate schedules counted in optimizer steps: linear warm-up, then step, cosine or
constant."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["SCHEDULES", "lr_factor", "build_scheduler"]

SCHEDULES = ("cosine", "step", "constant")


def lr_factor(
    step: int,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    warmup_factor: float = 0.001,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    min_ratio: float = 0.0,
) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based).

    Warm-up ramps linearly from warmup_factor to 1 over warmup_steps. "step" multiplies by gamma
    at each milestone (in steps); "cosine" decays from 1 to min_ratio over the steps after the
    warm-up; "constant" stays at 1.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {SCHEDULES}")
    if schedule == "step":
        f = gamma ** sum(1 for m in milestones if step >= m)
    elif schedule == "cosine":
        span = max(1, total_steps - warmup_steps)
        t = min(1.0, max(0.0, (step - warmup_steps) / span))
        f = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        f = 1.0
    if warmup_steps > 0 and step < warmup_steps:
        alpha = step / warmup_steps
        f *= warmup_factor * (1.0 - alpha) + alpha
    return f


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    warmup_factor: float = 0.001,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    min_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step. Its state_dict holds only numbers."""
    milestones = tuple(int(m) for m in milestones)

    def factor(step):
        return lr_factor(
            step, total_steps, schedule, warmup_steps, warmup_factor, milestones, gamma, min_ratio
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
