"""Plain-PyTorch reference of the fused LGF op (docs/design.md §2).

This is the ground truth of every parity test and the fallback backend. It is written
with ordinary differentiable PyTorch ops, so autograd provides its backward.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def lgf_fused_reference(
    x: Tensor, weight: Tensor, bias: Tensor, g: Tensor, gate: Tensor, gamma: Tensor
) -> Tensor:
    """y = x + gamma * (sigmoid(z_l) * l + sigmoid(z_g) * g), l = dwconv3x3(x) + bias.

    Shapes: x (N, C, H, W), weight (C, 1, 3, 3), bias (C,), g (N, C), gate (6, C) with rows
    a_l, b_l, c_l, a_g, b_g, c_g, gamma (C,). Computes in fp32 for fp16/bf16 inputs and
    returns x's dtype.
    """
    out_dtype = x.dtype
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    x_, weight_, bias_, g_, gate_, gamma_ = (t.to(acc) for t in (x, weight, bias, g, gate, gamma))
    if x_.numel() == 0:
        # conv2d refuses an empty plane (H or W = 0) and C = 0; the C++ kernels return an empty y
        # and zero gradients for every zero-size shape, and so does this: y depends on each
        # input through a zero factor.
        anchor = sum(t.sum() for t in (weight_, bias_, g_, gate_, gamma_)) * 0
        return (x_ + anchor).to(out_dtype)
    C = x_.shape[1]
    l = F.conv2d(x_, weight_, bias_, stride=1, padding=1, groups=C)
    gb = g_[:, :, None, None]

    def ch(v):
        return v.view(1, C, 1, 1)

    a_l, b_l, c_l, a_g, b_g, c_g = (ch(gate_[i]) for i in range(6))
    s_l = torch.sigmoid(a_l * l + b_l * gb + c_l)
    s_g = torch.sigmoid(a_g * l + b_g * gb + c_g)
    y = x_ + ch(gamma_) * (s_l * l + s_g * gb)
    return y.to(out_dtype)
