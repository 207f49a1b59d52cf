"""The optimizer of a training run."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(
    model: nn.Module,
    opt: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW; no weight decay on 1-D parameters (norms, biases, gammas)."""
    if opt not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt!r}; expected one of {OPTIMIZERS}")
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr)
