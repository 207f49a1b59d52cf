"""FLOP formulas for the fused LGF ops, so torch.utils.flop_counter.FlopCounterMode counts them.

Counted per element of x (N*C*H*W), 2 FLOPs per multiply-add as FlopCounterMode does for convs:

forward, 40 = 18 + 22:
    depthwise 3x3 conv          18  (9 multiply-adds)
    + bias                       1
    z_l, z_g = a*l + b*g + c     8  (2 mul + 2 add each)
    two sigmoids                 8  (neg, exp, add, div each)
    s_l*l + s_g*g                3
    x + gamma*(...)              2
backward, 108 = 35 + 73:
    recompute l, z_l, z_g, s_l, s_g                    35
    t = dy*gamma                                        1
    dgamma partial (s_l*l + s_g*g)*dy, accumulate       5
    dz_l, dz_g = t*(l|g)*s*(1-s)                        8
    dl = t*s_l + a_l*dz_l + a_g*dz_g                    5
    dg partial t*s_g + b_l*dz_l + b_g*dz_g, accumulate  6
    da, db, dc partials for both gates                 10
    dbias accumulate                                    1
    dweight (9 multiply-adds)                          18
    dx = dy + rotated depthwise conv of dl             19

The reference backend needs no formula: FlopCounterMode counts its conv2d (and conv backward)
and, like for every other PyTorch model, none of its elementwise ops.
"""

import torch
from torch.utils.flop_counter import register_flop_formula

FORWARD_FLOPS_PER_ELEMENT = 18 + 22
BACKWARD_FLOPS_PER_ELEMENT = 35 + 73

_registered = set()


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def fused_forward_flop(x_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one fused forward on an input of shape x_shape."""
    return FORWARD_FLOPS_PER_ELEMENT * _numel(x_shape)


def fused_backward_flop(dy_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of one fused backward (dy has x's shape)."""
    return BACKWARD_FLOPS_PER_ELEMENT * _numel(dy_shape)


def _op_packet(namespace: str, name: str):
    try:
        return getattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):  # op (or namespace) not registered in this process
        return None


def register_flop_formulas() -> list[str]:
    """Register the formulas for every fused op that exists now; safe to call again later.

    Call it after registering a new op (e.g. the Triton custom op) so that op is counted too.
    Returns the names of the ops that have a formula registered.
    """
    targets = (
        ("lgf", "fused_forward", fused_forward_flop),
        ("lgf", "fused_backward", fused_backward_flop),
        ("lgf_triton", "fused_forward", fused_forward_flop),
        ("lgf_triton", "fused_backward", fused_backward_flop),
    )
    for namespace, name, formula in targets:
        qualname = f"{namespace}::{name}"
        if qualname in _registered:
            continue
        packet = _op_packet(namespace, name)
        if packet is None:
            continue
        try:
            register_flop_formula(packet)(formula)
        except RuntimeError:  # "duplicate registrations": someone registered it already
            pass
        _registered.add(qualname)
    return sorted(_registered)


register_flop_formulas()
