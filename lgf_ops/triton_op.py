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
from ._cpp import output_memory_format
from ._validate import check_inputs
from .flops import register_flop_formulas

__all__ = ["lgf_fused_triton", "fused_forward", "fused_backward"]


@torch.library.custom_op("lgf_triton::fused_forward", mutates_args=())
def fused_forward(x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor) -> Tensor:
    return _k.lgf_forward(x, weight, bias, g, gate, gamma)


@fused_forward.register_fake
def _fused_forward_fake(x, weight, bias, g, gate, gamma):
    return torch.empty_like(x, memory_format=output_memory_format(x))


@torch.library.custom_op("lgf_triton::fused_backward", mutates_args=())
def fused_backward(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _k.lgf_backward(dy, x, weight, bias, g, gate, gamma)


@fused_backward.register_fake
def _fused_backward_fake(dy, x, weight, bias, g, gate, gamma):
    return (
        torch.empty_like(x, memory_format=output_memory_format(x)),
        torch.empty_like(weight, memory_format=torch.contiguous_format),
        torch.empty_like(bias, memory_format=torch.contiguous_format),
        torch.empty_like(g, memory_format=torch.contiguous_format),
        torch.empty_like(gate, memory_format=torch.contiguous_format),
        torch.empty_like(gamma, memory_format=torch.contiguous_format),
    )


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)  # only the inputs: the backward recomputes l


def _backward(ctx, dy):
    x, weight, bias, g, gate, gamma = ctx.saved_tensors
    return fused_backward(dy, x, weight, bias, g, gate, gamma)


fused_forward.register_autograd(_backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(
        "lgf_fused (triton backend): double backward (gradients of gradients) is not implemented; "
        "use backend='reference' if you need it"
    )


def _no_setup(ctx, inputs, output):
    pass


fused_backward.register_autograd(_no_double_backward, setup_context=_no_setup)

register_flop_formulas()  # FlopCounterMode sees the lgf_triton ops from now on


def lgf_fused_triton(x, weight, bias, g, gate, gamma):
    """Fused LGF through the Triton kernels, differentiable. Needs CUDA tensors, or CPU tensors
    with TRITON_INTERPRET=1 set before triton was imported. Arguments as in lgf_ops.lgf_fused."""
    check_inputs(x, weight, bias, g, gate, gamma)
    return fused_forward(x, weight, bias, g, gate, gamma)
