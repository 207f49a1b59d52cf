"""The optimizer of a training run."""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OPTIMIZERS", "NORM_LAYERS", "build_optimizer", "parameter_groups"]

OPTIMIZERS = ("sgd", "adamw")
# the layers whose parameters `norm_weight_decay` applies to, as in torchvision's
# split_normalization_params
NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def _norm_parameter_ids(model: nn.Module) -> set[int]:
    return {
        id(p)
        for m in model.modules()
        if isinstance(m, NORM_LAYERS)
        for p in m.parameters(recurse=False)
    }


def parameter_groups(
    model: nn.Module, weight_decay: float, norm_weight_decay: float | None = None
) -> list[dict]:
    """Trainable parameters in weight-decay groups. norm_weight_decay None: no decay on 1-D
    parameters (norms, biases, the blocks' gates and gammas), `weight_decay` on the others.
    A number: that decay on the parameters of normalization layers (NORM_LAYERS) and
    `weight_decay` on every other parameter, biases included (torchvision's --norm-weight-decay)."""
    norm_ids = _norm_parameter_ids(model) if norm_weight_decay is not None else set()
    decay, special = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if norm_weight_decay is None:
            (special if p.ndim <= 1 else decay).append(p)
        else:
            (special if id(p) in norm_ids else decay).append(p)
    special_decay = 0.0 if norm_weight_decay is None else norm_weight_decay
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": special, "weight_decay": special_decay},
    ]
    return groups


def build_optimizer(
    model: nn.Module,
    opt: str = "sgd",
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    norm_weight_decay: float | None = None,
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW over `parameter_groups` (two groups, always in the same order, so
    a checkpoint's optimizer state loads whatever the decay settings)."""
    if opt not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {opt!r}; expected one of {OPTIMIZERS}")
    groups = parameter_groups(model, weight_decay, norm_weight_decay)
    if opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    return torch.optim.AdamW(groups, lr=lr)
