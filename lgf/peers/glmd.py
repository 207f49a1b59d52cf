"""GLMD: global-local mutual-distillation fusion, a comparison block for one backbone level.

Like LGF it maps (N, C, H, W) to (N, C, H, W) and is inserted by the RetinaNet builder at
`insert_level` (block="glmd").
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..blocks import SE, _check_channels, group_norm_groups
from .attention import multi_head_attention

__all__ = ["GLMD", "AxialAttention", "SpatialAttention", "glmd_width"]


def glmd_width(channels: int, reduction: int = 4) -> int:
    """Internal width d of GLMD: channels // reduction, at least 1."""
    if isinstance(reduction, bool) or not isinstance(reduction, int) or reduction < 1:
        raise ValueError(f"GLMD: reduction must be a positive int, got {reduction!r}")
    return max(channels // reduction, 1)


def _num_heads(width, head_dim):
    """The largest head count <= width // head_dim (at least 1) that divides width."""
    if isinstance(head_dim, bool) or not isinstance(head_dim, int) or head_dim < 1:
        raise ValueError(f"GLMD: head_dim must be a positive int, got {head_dim!r}")
    heads = max(width // head_dim, 1)
    while width % heads:
        heads -= 1
    return heads


class SpatialAttention(nn.Module):
    """CBAM's spatial attention: x * sigmoid(conv_kxk([mean_c(x), max_c(x)])), conv without bias."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SpatialAttention: kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(desc))


class _AxisAttention(nn.Module):
    """Pre-norm residual multi-head self-attention over sequences (B, L, D)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, t):
        q, k, v = self.qkv(self.norm(t)).chunk(3, dim=-1)
        return t + self.proj(multi_head_attention(q, k, v, self.num_heads))


class AxialAttention(nn.Module):
    """Multi-head self-attention along each row (W tokens), then along each column (H tokens).

    Every pixel sees its whole row and then, through the column pass, the whole map, at a cost of
    O(HW (H + W)) instead of O((HW)^2). Each pass is a pre-LayerNorm residual attention layer with
    its own q/k/v and output projections. No positional encoding: the input comes from convolutions.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AxialAttention: dim {dim} is not divisible by num_heads {num_heads}")
        self.row = _AxisAttention(dim, num_heads)
        self.col = _AxisAttention(dim, num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, d, h, w = x.shape
        rows = self.row(x.permute(0, 2, 3, 1).reshape(n * h, w, d))  # (N*H, W, D)
        cols = rows.reshape(n, h, w, d).transpose(1, 2).reshape(n * w, h, d)  # (N*W, H, D)
        cols = self.col(cols)
        return cols.reshape(n, w, h, d).permute(0, 3, 2, 1)  # (N, D, H, W)


class GLMD(nn.Module):
    """Global-local mutual-distillation fusion.

        local   a = SE(dwconv3x3(x))                       channel attention, C channels
                b = SpatialAttention(conv1x1_{C->d}(x))    spatial attention, d channels
                L = GN(conv1x1_{C+d->d}([a, b]))
        global  G = GN(AxialAttention(conv1x1_{C->d}(x)))  rows then columns, multi-head
        mutual  G' = conv3x3(G * sigmoid(L))      L' = conv3x3(L * sigmoid(G))      (d -> d)
        out     = x + conv1x1_{d->C}(G' + L')

    Width choices (the published description fixes the operations, not the widths): the branches
    run at d = C // reduction (128 for C = 512 with the default reduction 4), so the attention and
    the two 3x3 convs stay cheap on the 80x80 C3 map of a 640x640 image; the final 1x1 expands d
    back to C. Being linear, it is the same as expanding G' and L' separately, so the output is
    still "G' + L' + x". The attention uses d // head_dim heads (4 heads of 32 at d = 128; fewer
    if that does not divide d), softmax(q k^T / sqrt(d_h)) v. L and G end in a GroupNorm so that
    the sigmoid gates of the mutual step see centred inputs. SE uses reduction `se_reduction`
    (16) without biases, as `lgf.SE`. No layer scale: the block is exactly the formula above.

    Args:
        channels: C.
        reduction: C // d (default 4).
        head_dim: target attention head width (default 32).
        se_reduction: SE reduction of the channel attention (default 16).
        sa_kernel: kernel of the spatial attention conv (default 7).
        gn_groups: GroupNorm groups of L and G (see `lgf.blocks.group_norm_groups`).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 4,
        head_dim: int = 32,
        se_reduction: int = 16,
        sa_kernel: int = 7,
        gn_groups: int = 32,
    ):
        super().__init__()
        _check_channels("GLMD", channels)
        d = glmd_width(channels, reduction)
        self.channels = channels
        self.width = d
        self.num_heads = _num_heads(d, head_dim)
        groups = group_norm_groups(d, gn_groups)

        self.local_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.local_ca = SE(channels, reduction=se_reduction)
        self.local_pw = nn.Conv2d(channels, d, 1)
        self.local_sa = SpatialAttention(sa_kernel)
        self.local_fuse = nn.Conv2d(channels + d, d, 1, bias=False)
        self.local_norm = nn.GroupNorm(groups, d)

        self.global_in = nn.Conv2d(channels, d, 1)
        self.global_attn = AxialAttention(d, self.num_heads)
        self.global_norm = nn.GroupNorm(groups, d)

        self.mutual_g = nn.Conv2d(d, d, 3, padding=1)
        self.mutual_l = nn.Conv2d(d, d, 3, padding=1)
        self.out_proj = nn.Conv2d(d, channels, 1)

    def local_branch(self, x: torch.Tensor) -> torch.Tensor:
        a = self.local_ca(self.local_dw(x))
        b = self.local_sa(self.local_pw(x))
        return self.local_norm(self.local_fuse(torch.cat([a, b], dim=1)))

    def global_branch(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_norm(self.global_attn(self.global_in(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"GLMD: expected input (N, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        local = self.local_branch(x)
        glob = self.global_branch(x)
        g_new = self.mutual_g(glob * torch.sigmoid(local))
        l_new = self.mutual_l(local * torch.sigmoid(glob))
        return x + self.out_proj(g_new + l_new)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, width={self.width}, num_heads={self.num_heads}"
