"""Loads the compiled extension lgf_ops._C and registers fake + autograd for its ops.

The C++ side (csrc/lgf_ops.cpp) defines lgf::fused_forward and lgf::fused_backward with
TORCH_LIBRARY and registers the CPU (and, when built, CUDA) kernels. Here we add what
torch.compile and autograd need: shape-only fake kernels and the backward formula (the FLOP
count is in lgf_ops.flops).
"""

import torch
from torch import Tensor

from ._autograd import no_double_backward, no_setup, save_inputs
from ._fake import fused_backward_fake, fused_forward_fake
from ._layout import output_memory_format

__all__ = [
    "extension_path",
    "has_cpu_kernel",
    "has_cuda_kernel",
    "load_error",
    "loaded",
    "output_memory_format",
]

try:
    from . import _C  # noqa: F401  (loading it runs the TORCH_LIBRARY registrations)

    _LOAD_ERROR = None
except ImportError as e:  # never built, or built against another torch (undefined symbols)
    _C = None
    _LOAD_ERROR = f"{type(e).__name__}: {e}"


def loaded() -> bool:
    return _C is not None


def load_error() -> str:
    """Why importing lgf_ops._C failed ("" when it loaded)."""
    return _LOAD_ERROR or ""


def extension_path() -> str | None:
    return getattr(_C, "__file__", None)


def _has_kernel(key: str) -> bool:
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("lgf::fused_forward", key)


def has_cpu_kernel() -> bool:
    return _has_kernel("CPU")


def has_cuda_kernel() -> bool:
    return _has_kernel("CUDA")


if _C is not None:
    torch.library.register_fake("lgf::fused_forward")(fused_forward_fake)
    torch.library.register_fake("lgf::fused_backward")(fused_backward_fake)

    def _backward(ctx, dy: Tensor) -> tuple[Tensor, ...]:
        x, weight, bias, g, gate, gamma = ctx.saved_tensors
        return torch.ops.lgf.fused_backward(dy, x, weight, bias, g, gate, gamma)

    torch.library.register_autograd("lgf::fused_forward", _backward, setup_context=save_inputs)
    torch.library.register_autograd(
        "lgf::fused_backward", no_double_backward, setup_context=no_setup
    )
    from .export import register_reference_decomposition

    register_reference_decomposition(torch.ops.lgf.fused_forward.default)
