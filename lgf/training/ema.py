"""Exponential moving average of model weights, with a warm-up ramp of the decay.

After `updates` optimizer steps the decay is `decay * (1 - exp(-updates / ramp))`: close to 0
at first (the average follows the weights), reaching `decay` after a few `ramp` steps. Floating
point parameters and buffers (e.g. BatchNorm statistics) are averaged; integer buffers are copied.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn

from ..utils.unwrap import unwrap

__all__ = ["ModelEMA"]


class ModelEMA:
    """An averaged copy (`module`, eval mode, no gradients) of a model's weights."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, ramp: float = 2000.0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if ramp <= 0:
            raise ValueError(f"EMA ramp must be > 0 steps, got {ramp}")
        self.module = copy.deepcopy(unwrap(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.ramp = float(ramp)
        self.updates = 0

    def current_decay(self) -> float:
        return self.decay * (1.0 - math.exp(-self.updates / self.ramp))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = unwrap(model).state_dict()
        for name, avg in self.module.state_dict().items():
            cur = src[name].detach()
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(cur.to(avg.dtype), alpha=1.0 - d)
            else:
                avg.copy_(cur)

    def state_dict(self) -> dict[str, Any]:
        return {
            "module": self.module.state_dict(),
            "updates": self.updates,
            "decay": self.decay,
            "ramp": self.ramp,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
