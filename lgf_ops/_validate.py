"""Argument checks shared by every backend: clear Python errors naming the bad argument."""

import torch
from torch import Tensor

_FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _shape_error(name: str, expected: str, t: Tensor) -> ValueError:
    return ValueError(f"lgf_fused: {name} must have shape {expected}, got {tuple(t.shape)}")


def check_inputs(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> None:
    """Raise TypeError/ValueError for anything the kernels cannot take."""
    args = dict(x=x, weight=weight, bias=bias, g=g, gate=gate, gamma=gamma)
    for name, t in args.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"lgf_fused: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOATING:
            raise TypeError(
                f"lgf_fused: {name} must be a floating tensor (float16, bfloat16, float32, "
                f"float64), got {t.dtype}"
            )
    if x.dim() != 4:
        raise ValueError(
            f"lgf_fused: x must be 4-D (N, C, H, W), got {x.dim()}-D shape {tuple(x.shape)}"
        )
    N, C = x.shape[0], x.shape[1]
    if weight.dim() != 4 or weight.shape[1] != 1 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(
            f"lgf_fused: weight must be a depthwise 3x3 filter of shape ({C}, 1, 3, 3), "
            f"got {tuple(weight.shape)}"
        )
    if weight.shape[0] != C:
        raise ValueError(f"lgf_fused: weight has {weight.shape[0]} channels but x has C={C}")
    if tuple(bias.shape) != (C,):
        raise _shape_error("bias", f"({C},)", bias)
    if tuple(g.shape) != (N, C):
        raise _shape_error("g", f"(N, C) = ({N}, {C})", g)
    if tuple(gate.shape) != (6, C):
        raise _shape_error("gate", f"(6, C) = (6, {C})", gate)
    if tuple(gamma.shape) != (C,):
        raise _shape_error("gamma", f"({C},)", gamma)
    for name, t in args.items():
        if t.device != x.device:
            raise ValueError(
                f"lgf_fused: {name} is on {t.device} but x is on {x.device}; "
                "all inputs must share one device"
            )
    for name in ("g",):
        if args[name].dtype != x.dtype:
            raise TypeError(
                f"lgf_fused: {name} has dtype {args[name].dtype} but x has {x.dtype}; "
                "g must match x"
            )
    pdt = weight.dtype
    for name in ("bias", "gate", "gamma"):
        if args[name].dtype != pdt:
            raise TypeError(
                f"lgf_fused: {name} has dtype {args[name].dtype} but weight has {pdt}; "
                "parameters (weight, bias, gate, gamma) must share one dtype"
            )
    low = (torch.float16, torch.bfloat16)
    if not (pdt == x.dtype or (pdt == torch.float32 and x.dtype in low)):
        raise TypeError(
            f"lgf_fused: parameters (weight, bias, gate, gamma) have dtype {pdt} "
            f"but x has {x.dtype}; "
            "they must match x, or be float32 when x is float16/bfloat16"
        )
