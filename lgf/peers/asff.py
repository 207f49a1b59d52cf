"""ASFF: adaptively spatial feature fusion over the FPN outputs, as a comparison neck.

`ASFF` fuses n same-width pyramid levels into each of them with per-pixel softmax weights.
`ASFFPN` is torchvision's `FeaturePyramidNetwork` followed by `ASFF` over its first outputs (P3-P5
for RetinaNet); the extra levels (P6, P7) are computed by the FPN from its own P5, unchanged. It
subclasses the FPN and keeps its module names, so a plain-FPN checkpoint loads into it with only
the `asff.*` keys missing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork

__all__ = ["ASFF", "ASFFPN", "resize_to"]


def resize_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """x resized to `size` (H, W): nearest upsampling, max pooling down (adaptive: any ratio)."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.adaptive_max_pool2d(x, size)
    return F.interpolate(x, size=size, mode="nearest")


class _LevelFusion(nn.Module):
    """Fusion of all levels into one target level."""

    def __init__(self, channels, num_levels, compress):
        super().__init__()
        self.compress = nn.ModuleList(
            nn.Sequential(nn.Conv2d(channels, compress, 1), nn.ReLU(inplace=True))
            for _ in range(num_levels)
        )
        self.logits = nn.Conv2d(compress * num_levels, num_levels, 1)
        self.out = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.kaiming_uniform_(self.out.weight, a=1)  # like the FPN's own 3x3 output convs
        nn.init.zeros_(self.out.bias)

    def weights(self, resized):
        """(N, n, H, W) softmax weights over the levels (float32; they sum to 1 at every pixel)."""
        z = self.logits(torch.cat([c(r) for c, r in zip(self.compress, resized)], dim=1))
        return torch.softmax(z.float(), dim=1)

    def forward(self, resized):
        w = self.weights(resized).to(resized[0].dtype)
        fused = sum(w[:, k : k + 1] * r for k, r in enumerate(resized))
        return self.out(fused)


class ASFF(nn.Module):
    """Adaptively spatial feature fusion of n levels of the same width C.

    For each target level l:
        X_k   = resize(P_k, size of P_l)            nearest up / max-pool down, no parameters
        a_k   = softmax_k(conv1x1_{n*c->n}([ReLU(conv1x1_{C->c}(X_k))]_k))   per pixel, c = compress
        out_l = conv3x3(sum_k a_k * X_k)

    The output conv has a bias and no norm or activation, like the FPN outputs it replaces
    (the published ASFF uses conv-BN-LeakyReLU; BatchNorm is fragile at detection batch sizes).

    Args:
        channels: C of every level (the FPN's out_channels).
        num_levels: n (3 for P3-P5).
        compress: c, the width of the per-level weight features (16 as published).
    """

    def __init__(self, channels: int = 256, num_levels: int = 3, compress: int = 16):
        super().__init__()
        if num_levels < 2:
            raise ValueError(f"ASFF: num_levels must be >= 2, got {num_levels}")
        self.num_levels = num_levels
        self.fusions = nn.ModuleList(
            _LevelFusion(channels, num_levels, compress) for _ in range(num_levels)
        )

    def _resized(self, feats, level):
        size = feats[level].shape[-2:]
        return [resize_to(f, size) for f in feats]

    def _check(self, feats):
        if len(feats) != self.num_levels:
            raise ValueError(f"ASFF: expected {self.num_levels} feature maps, got {len(feats)}")

    def fusion_weights(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The per-pixel weights of every target level: a list of (N, n, H_l, W_l) tensors."""
        self._check(feats)
        return [f.weights(self._resized(feats, l)) for l, f in enumerate(self.fusions)]

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """feats: a list of n maps (finest first). Returns the list of n fused maps, same shapes."""
        self._check(feats)
        return [f(self._resized(feats, l)) for l, f in enumerate(self.fusions)]


class ASFFPN(FeaturePyramidNetwork):
    """torchvision's FPN whose outputs for the input levels (P3-P5) are replaced by ASFF's.

    Same constructor arguments as `FeaturePyramidNetwork` plus `compress` (ASFF weight width).
    The output dict has the FPN's keys, in order; extra blocks see the FPN's own P5.
    """

    def __init__(
        self,
        in_channels_list: Sequence[int],
        out_channels: int,
        extra_blocks: nn.Module | None = None,
        compress: int = 16,
    ):
        super().__init__(in_channels_list, out_channels, extra_blocks=extra_blocks)
        self.asff = ASFF(out_channels, num_levels=len(in_channels_list), compress=compress)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = super().forward(x)
        names = list(out.keys())
        n = len(self.inner_blocks)
        fused = self.asff([out[k] for k in names[:n]])
        return OrderedDict(list(zip(names[:n], fused)) + [(k, out[k]) for k in names[n:]])
