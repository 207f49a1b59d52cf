"""Multi-head dot-product attention written with plain matmuls.

`F.scaled_dot_product_attention` is faster, but on CPU `torch.utils.flop_counter` counts 0 FLOPs
for it; the comparison blocks are measured for the complexity report, so they use this instead.
"""

from __future__ import annotations

import math

import torch


def multi_head_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """softmax(q_h k_h^T / sqrt(d_h)) v_h for each head h, heads concatenated.

    q: (B, Lq, D); k, v: (B, Lk, D) with D divisible by num_heads. Returns (B, Lq, D). The softmax
    runs in float32 (under autocast too) and the result is cast back to v's dtype.
    """
    b, lq, d = q.shape
    lk = k.shape[1]
    dh = d // num_heads
    q = q.reshape(b, lq, num_heads, dh).transpose(1, 2)
    k = k.reshape(b, lk, num_heads, dh).transpose(1, 2)
    v = v.reshape(b, lk, num_heads, dh).transpose(1, 2)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    out = torch.matmul(weights, v)
    return out.transpose(1, 2).reshape(b, lq, d)
