"""SIE-FPN: a semantic and spatial information enhancement FPN, as a comparison neck.

`SIEFPN` is a drop-in replacement of torchvision's `FeaturePyramidNetwork`: same constructor
arguments, same input (an ordered dict of backbone features) and same output dict (the input
names plus the extra blocks' names, e.g. "0", "1", "2", "p6", "p7" for RetinaNet). It subclasses
the torchvision FPN and keeps its lateral 1x1 convs (`inner_blocks`), output 3x3 convs
(`layer_blocks`) and `extra_blocks` under the same names, so a plain-FPN checkpoint loads into it
with only the new modules' keys missing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

from ..blocks import SE, group_norm_groups
from .attention import multi_head_attention

__all__ = ["SIEFPN", "LateralFeatureEnhancement", "MultiInfoCompensation", "NonLocal2d"]


def _conv_gn_relu(in_channels, out_channels, kernel_size, gn_groups):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.GroupNorm(group_norm_groups(out_channels, gn_groups), out_channels),
        nn.ReLU(inplace=True),
    )


class LateralFeatureEnhancement(nn.Module):
    """LFE on the lateral feature x (after the FPN's 1x1 lateral conv), C -> C.

    t  = ReLU(GN(conv3x3(x)))                 semantic refinement
    r  = x * sigmoid(conv1x1(t))              sigmoid-gated refinement of the lateral
    s  = SE(x)                                channel enhancement
    out = w0 * t + w1 * r + w2 * s,  (w0, w1, w2) = softmax(logits), logits zero-initialised
    """

    def __init__(self, channels: int, se_reduction: int = 16, gn_groups: int = 32):
        super().__init__()
        self.semantic = _conv_gn_relu(channels, channels, 3, gn_groups)
        self.gate = nn.Conv2d(channels, channels, 1)
        self.se = SE(channels, reduction=se_reduction)
        self.logits = nn.Parameter(torch.zeros(3))

    def branch_weights(self) -> torch.Tensor:
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.semantic(x)
        r = x * torch.sigmoid(self.gate(t))
        s = self.se(x)
        w = self.branch_weights().to(x.dtype)
        return w[0] * t + w[1] * r + w[2] * s


class MultiInfoCompensation(nn.Module):
    """MIC on the raw backbone feature C_i, in parallel with the 1x1 lateral + LFE: C_in -> C.

        m0 = ReLU(GN(conv1x1_{C_in->C/4}(c)))
        m1 = ReLU(GN(conv3x3(m0)))   m2 = ReLU(GN(conv3x3(m1)))   m3 = ReLU(GN(conv3x3(m2)))
        out = concat(m0, m1, m2, m3)                 (receptive fields 1, 3, 5, 7 on C_i)

    The chain of three 3x3 convs at width C/4 (64 for C = 256) recovers the spatial context the
    1x1 lateral conv cannot see, at a fraction of the cost of 256-wide 3x3 convs.
    """

    def __init__(self, in_channels: int, out_channels: int, gn_groups: int = 32):
        super().__init__()
        if out_channels % 4:
            raise ValueError(
                f"MultiInfoCompensation: out_channels must be divisible by 4, got {out_channels}"
            )
        width = out_channels // 4
        self.reduce = _conv_gn_relu(in_channels, width, 1, gn_groups)
        self.convs = nn.ModuleList(_conv_gn_relu(width, width, 3, gn_groups) for _ in range(3))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        parts = [self.reduce(c)]
        for conv in self.convs:
            parts.append(conv(parts[-1]))
        return torch.cat(parts, dim=1)


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block with 2x2-subsampled keys and values, residual.

        q = conv1x1_{C->C/2}(x);  k, v = maxpool2x2(conv1x1_{C->C/2}(x))
        out = x + W(softmax(q k^T / sqrt(C/2)) v),   W = conv1x1_{C/2->C}, weight and bias zero

    With W zero-initialised the block starts as the identity. Max pooling uses ceil_mode so maps
    with an odd side (or 1x1) work.
    """

    def __init__(self, channels: int, reduction: int = 2):
        super().__init__()
        inner = max(channels // reduction, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, D)
        k = (
            F.max_pool2d(self.key(x), 2, 2, ceil_mode=True).flatten(2).transpose(1, 2)
        )  # (N, hw/4, D)
        v = F.max_pool2d(self.value(x), 2, 2, ceil_mode=True).flatten(2).transpose(1, 2)
        y = multi_head_attention(q, k, v, num_heads=1)
        return x + self.out(y.transpose(1, 2).reshape(n, -1, h, w))


class SIEFPN(FeaturePyramidNetwork):
    """FPN with the three SIE-FPN enhancements (a comparison neck; GroupNorm instead of BatchNorm).

    For the levels i = 0 (finest) .. n-1 (coarsest), with C_i the backbone feature:

        lateral_i = LFE_i(inner_i(C_i)) + MIC_i(C_i)             inner_i: the FPN's 1x1 conv
        M_{n-1}   = lateral_{n-1}
        M_i       = lateral_i + upsample_nearest(GAU_i(M_{i+1}))  GAU_i: NonLocal2d on M_{i+1}
        P_i       = layer_i(M_i)                                  layer_i: the FPN's 3x3 conv
        extra_blocks(P, C) as in torchvision (RetinaNet: P6 = conv(P5), P7 = conv(ReLU(P6)))

    Global attention upsampling (GAU) applies the non-local block before each 2x upsampling of
    the top-down path, so every merge carries globally attended context. Normalisation is
    GroupNorm (32 groups): detection batches of 1-2 images per device make BatchNorm statistics
    unreliable. The FPN's own convs keep torchvision's initialisation (kaiming_uniform, a=1).

    Args:
        in_channels_list, out_channels, extra_blocks: as `FeaturePyramidNetwork`.
        se_reduction: SE reduction inside LFE (default 16).
        nl_reduction: channel reduction of the non-local block (default 2).
        gn_groups: GroupNorm groups (default 32).
    """

    def __init__(
        self,
        in_channels_list: Sequence[int],
        out_channels: int,
        extra_blocks: nn.Module | None = None,
        se_reduction: int = 16,
        nl_reduction: int = 2,
        gn_groups: int = 32,
    ):
        super().__init__(in_channels_list, out_channels, extra_blocks=extra_blocks)
        self.lfe = nn.ModuleList(
            LateralFeatureEnhancement(out_channels, se_reduction, gn_groups)
            for _ in in_channels_list
        )
        self.mic = nn.ModuleList(
            MultiInfoCompensation(c, out_channels, gn_groups) for c in in_channels_list
        )
        # gau[i] attends over M_{i+1} before it is upsampled into level i.
        self.gau = nn.ModuleList(
            NonLocal2d(out_channels, nl_reduction) for _ in in_channels_list[1:]
        )

    def lateral(self, c: torch.Tensor, idx: int) -> torch.Tensor:
        return self.lfe[idx](self.inner_blocks[idx](c)) + self.mic[idx](c)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names = list(x.keys())
        feats = list(x.values())
        if len(feats) != len(self.inner_blocks):
            raise ValueError(
                f"SIEFPN: expected {len(self.inner_blocks)} feature maps, got {len(feats)}"
            )
        last = self.lateral(feats[-1], len(feats) - 1)
        results = [self.layer_blocks[-1](last)]
        for idx in range(len(feats) - 2, -1, -1):
            lateral = self.lateral(feats[idx], idx)
            top_down = F.interpolate(self.gau[idx](last), size=lateral.shape[-2:], mode="nearest")
            last = lateral + top_down
            results.insert(0, self.layer_blocks[idx](last))
        if self.extra_blocks is not None:
            results, names = self.extra_blocks(results, feats, names)
        return OrderedDict(zip(names, results))
