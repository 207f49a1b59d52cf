"""The Triton backend of the fused LGF op as PyTorch ops with autograd.

    y = lgf_fused_triton(x, weight, bias, g, gate, gamma)

Ops (torch.library.triton_op, so torch.compile and torch.export see the kernels inside):
lgf_triton::fused_forward(x, weight, bias, g, gate, gamma) -> y and
lgf_triton::fused_backward(dy, x, weight, bias, g, gate, gamma) -> (dx, dweight, dbias, dg,
dgate, dgamma). The forward's autograd saves only the inputs; the backward recomputes l.
Double backward is not implemented (a clear error). Both ops have FLOP formulas
(lgf_ops.flops). Importing this module raises ImportError when triton is not installed.

Under Triton's CPU interpreter the kernels cannot be traced (torch.library.wrap_triton hands
back the interpreted function), so there the ops stay opaque to torch.compile, like custom ops.
"""

import torch
from torch import Tensor
from torch._subclasses.functional_tensor import FunctionalTensorMode

from ._autograd import no_double_backward, no_setup, save_inputs
from ._validate import check_inputs
from .export import register_reference_decomposition
from .flops import register_flop_formulas
from .triton_launch import interpreting, lgf_backward, lgf_forward

__all__ = ["lgf_fused_triton", "fused_forward", "fused_backward"]


@torch.library.triton_op("lgf_triton::fused_forward", mutates_args=())
def fused_forward(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tensor:
    return lgf_forward(x, weight, bias, g, gate, gamma)


@torch.library.triton_op("lgf_triton::fused_backward", mutates_args=())
def fused_backward(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return lgf_backward(dy, x, weight, bias, g, gate, gamma)


def _backward(ctx, dy: Tensor) -> tuple[Tensor, ...]:
    x, weight, bias, g, gate, gamma = ctx.saved_tensors
    return fused_backward(dy, x, weight, bias, g, gate, gamma)


fused_forward.register_autograd(_backward, setup_context=save_inputs)
fused_backward.register_autograd(no_double_backward, setup_context=no_setup)

if interpreting():

    def _opaque(mode, op, types, args, kwargs):
        return mode.__torch_dispatch__(op, types, args, kwargs)

    for _op in (fused_forward, fused_backward):
        _op.register_torch_dispatch(FunctionalTensorMode, _opaque)

register_flop_formulas()  # FlopCounterMode sees the lgf_triton ops from now on
register_reference_decomposition(fused_forward._opoverload)


def lgf_fused_triton(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tensor:
    """Fused LGF through the Triton kernels, differentiable. Needs CUDA tensors, or CPU tensors
    with TRITON_INTERPRET=1 set before triton was imported. Arguments as in lgf_ops.lgf_fused."""
    check_inputs(x, weight, bias, g, gate, gamma)
    return fused_forward(x, weight, bias, g, gate, gamma)
