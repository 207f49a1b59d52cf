"""Parameter and FLOP counts of a block or a RetinaNet from lgf.models (docs/design.md §4).

FLOPs are what torch.utils.flop_counter.FlopCounterMode counts for one forward pass:
convolutions and matmuls at 2 per multiply-add, plus the registered formula of the fused LGF op
(lgf_ops.flops, 40 per element); elementwise PyTorch ops count 0, as everywhere in
FlopCounterMode. So an LGF block on the "reference" backend counts fewer FLOPs than the fused one
for the same math (only its depthwise conv).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.detection.backbone_utils import BackboneWithFPN

import lgf_ops

from .models import make_block

__all__ = ["count_params", "count_flops", "block_complexity", "model_complexity"]


def count_params(module: nn.Module | None) -> int:
    """Number of parameters of `module` (0 for None)."""
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _register_lgf_flops() -> None:
    # The Triton op registers itself on first import (available_backends imports it when
    # present); both fused ops get their FLOP formula before anything is counted.
    lgf_ops.available_backends()
    lgf_ops.flops.register_flop_formulas()


def count_flops(fn: Callable[[], Any]) -> tuple[Any, int]:
    """(fn(), FLOPs counted while it ran), without autograd."""
    _register_lgf_flops()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops()


def _in_eval_mode(module: nn.Module, fn: Callable[[], Any]) -> Any:
    was_training = module.training
    module.eval()
    try:
        return fn()
    finally:
        module.train(was_training)


def block_complexity(
    block: str | nn.Module | None,
    channels: int,
    height: int,
    width: int,
    *,
    gate: str = "sigmoid",
    **block_kwargs: Any,
) -> tuple[int, int]:
    """(params, flops) of a block alone on a (1, channels, height, width) input, in eval mode.

    `block` is a name accepted by `lgf.models.make_block` or an nn.Module; (0, 0) for no block.
    """
    module = (
        block
        if isinstance(block, nn.Module)
        else make_block(block, channels, gate=gate, **block_kwargs)
    )
    if module is None:
        return 0, 0
    ref = next(module.parameters(), None)
    x = torch.randn(1, channels, height, width, device=ref.device if ref is not None else "cpu")
    _, flops = _in_eval_mode(module, lambda: count_flops(lambda: module(x)))
    return count_params(module), flops


def _check_retinanet(model: nn.Module) -> BackboneWithFPN:
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, BackboneWithFPN) or not hasattr(model, "head"):
        raise TypeError(
            "model must be a torchvision RetinaNet with a BackboneWithFPN, "
            f"got {type(model).__name__}"
        )
    return backbone


def _count_parts(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, int]]:
    backbone = model.backbone
    block = getattr(backbone, "block", None)
    parts = {}
    feats, flops = count_flops(lambda: backbone.body(x))
    parts["body"] = {"params": count_params(backbone.body), "flops": flops}
    if block is not None:
        name = backbone.feature_name
        feats[name], flops = count_flops(lambda: block(feats[name]))
        parts["block"] = {"params": count_params(block), "flops": flops}
    pyramid, flops = count_flops(lambda: backbone.fpn(feats))
    parts["fpn"] = {"params": count_params(backbone.fpn), "flops": flops}
    _, flops = count_flops(lambda: model.head(list(pyramid.values())))
    parts["head"] = {"params": count_params(model.head), "flops": flops}
    return parts


def model_complexity(model: nn.Module, img_size: int = 640) -> dict[str, Any]:
    """Params and FLOPs of a RetinaNet from lgf.models on one (1, 3, img_size, img_size) image.

    Counts the network proper: backbone body, block (if any), FPN or neck, and the head, run in
    eval mode without autograd on a tensor already at `img_size` (the transform's resize and
    normalisation and the box decoding / NMS are not counted).

    Returns {"params": int, "flops": int, "parts": {"body" | "block" | "fpn" | "head":
    {"params": int, "flops": int}}} ("block" only when the model has one; "fpn" is the neck,
    whatever its class). "params" is every parameter of the model.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 32:
        raise ValueError(f"img_size must be an int >= 32, got {img_size!r}")
    _check_retinanet(model)
    ref = next(model.parameters())
    x = torch.randn(1, 3, img_size, img_size, device=ref.device, dtype=ref.dtype)
    parts = _in_eval_mode(model, lambda: _count_parts(model, x))
    return {
        "params": count_params(model),
        "flops": sum(p["flops"] for p in parts.values()),
        "parts": parts,
    }
