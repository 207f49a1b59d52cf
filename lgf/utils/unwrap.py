"""The module a model wrapper holds: DistributedDataParallel, DataParallel, torch.compile."""

from __future__ import annotations

import torch.nn as nn

__all__ = ["unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The innermost wrapped module of `model`, or `model` itself.

    Strips, as often as they are nested: torch.compile's OptimizedModule (`_orig_mod`) and any
    wrapper that holds the model as the nn.Module attribute `module` (DistributedDataParallel,
    DataParallel and wrappers written like them).
    """
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
