"""The Triton backend of the fused LGF op as PyTorch custom ops with fake kernels and autograd.

    y = lgf_fused_triton(x, weight, bias, g, gate, gamma)

Ops: lgf_triton::fused_forward(x, weight, bias, g, gate, gamma) -> y and
lgf_triton::fused_backward(dy, x, weight, bias, g, gate, gamma) -> (dx, dweight, dbias, dg, dgate,
dgamma). The forward's autograd saves only the inputs; the backward kernel recomputes l. Double
backward is not implemented (a clear error). Both ops have FLOP formulas (lgf_ops.flops).
Importing this module raises ImportError when triton is not installed.
"""

from typing import Tuple

import torch
from torch import Tensor

from . import triton_kernels as _k  # raises ImportError without triton
from ._fake import (
    fused_backward_fake,
    fused_forward_fake,
    no_double_backward,
    no_setup,
    save_inputs,
)
from ._validate import check_inputs
from .flops import register_flop_formulas

__all__ = ["lgf_fused_triton", "fused_forward", "fused_backward"]


@torch.library.custom_op("lgf_triton::fused_forward", mutates_args=())
def fused_forward(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tensor:
    return _k.lgf_forward(x, weight, bias, g, gate, gamma)


fused_forward.register_fake(fused_forward_fake)


@torch.library.custom_op("lgf_triton::fused_backward", mutates_args=())
def fused_backward(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _k.lgf_backward(dy, x, weight, bias, g, gate, gamma)


fused_backward.register_fake(fused_backward_fake)


def _backward(ctx, dy):
    x, weight, bias, g, gate, gamma = ctx.saved_tensors
    return fused_backward(dy, x, weight, bias, g, gate, gamma)


fused_forward.register_autograd(_backward, setup_context=save_inputs)
fused_backward.register_autograd(no_double_backward, setup_context=no_setup)

register_flop_formulas()  # FlopCounterMode sees the lgf_triton ops from now on


def lgf_fused_triton(x, weight, bias, g, gate, gamma):
    """Fused LGF through the Triton kernels, differentiable. Needs CUDA tensors, or CPU tensors
    with TRITON_INTERPRET=1 set before triton was imported. Arguments as in lgf_ops.lgf_fused."""
    check_inputs(x, weight, bias, g, gate, gamma)
    return fused_forward(x, weight, bias, g, gate, gamma)
