"""Shape-only (fake) kernels of the C++ ops lgf::fused_forward and lgf::fused_backward.

(The Triton ops need none: torch.library.triton_op traces their launchers with fake tensors.)
"""

import torch
from torch import Tensor

from ._layout import output_memory_format


def fused_forward_fake(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tensor:
    return torch.empty_like(x, memory_format=output_memory_format(x))


def fused_backward_fake(
    dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> tuple[Tensor, ...]:
    """(dx, dweight, dbias, dg, dgate, dgamma): dx laid out like y, the rest contiguous."""
    dx = torch.empty_like(x, memory_format=output_memory_format(x))
    rest = (
        torch.empty_like(t, memory_format=torch.contiguous_format)
        for t in (weight, bias, g, gate, gamma)
    )
    return (dx, *rest)
