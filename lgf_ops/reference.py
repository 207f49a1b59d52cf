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
    # Written for TorchScript too: torch.jit.script compiles it for scripted LGF blocks.
    acc = x.dtype
    if x.dtype == torch.float16 or x.dtype == torch.bfloat16:
        acc = torch.float32
    x_ = x.to(acc)
    if x_.numel() == 0:
        # conv2d refuses an empty plane (H or W = 0) and C = 0; the C++ kernels return an empty y
        # and zero gradients for every zero-size shape, and so does this: y depends on each
        # input through a zero factor.
        params = [weight, bias, g, gate, gamma]
        anchor = torch.zeros((), dtype=acc, device=x.device)
        for t in params:
            anchor = anchor + t.to(acc).sum() * 0
        return (x_ + anchor).to(x.dtype)
    C = x_.shape[1]
    l = F.conv2d(x_, weight.to(acc), bias.to(acc), stride=1, padding=1, groups=C)
    gb = g.to(acc)[:, :, None, None]
    k = gate.to(acc).reshape(6, 1, C, 1, 1)  # k[0..5] = a_l, b_l, c_l, a_g, b_g, c_g per channel
    s_l = torch.sigmoid(k[0] * l + k[1] * gb + k[2])
    s_g = torch.sigmoid(k[3] * l + k[4] * gb + k[5])
    y = x_ + gamma.to(acc).reshape(1, C, 1, 1) * (s_l * l + s_g * gb)
    return y.to(x.dtype)
