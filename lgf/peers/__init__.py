"""Published fusion designs, reimplemented as comparison controls for LGF.

- `GLMD`: global-local mutual-distillation fusion, a block for one backbone level (like LGF).
- `SIEFPN`: the semantic/spatial information enhancement FPN, replacing torchvision's FPN.
- `ASFFPN`: torchvision's FPN followed by adaptively spatial feature fusion (`ASFF`) of P3-P5.

`make_neck(name, in_channels_list, out_channels, extra_blocks)` builds a neck by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from .asff import ASFF, ASFFPN
from .glmd import GLMD, AxialAttention
from .sie_fpn import SIEFPN, LateralFeatureEnhancement, MultiInfoCompensation, NonLocal2d

__all__ = [
    "GLMD",
    "AxialAttention",
    "SIEFPN",
    "LateralFeatureEnhancement",
    "MultiInfoCompensation",
    "NonLocal2d",
    "ASFF",
    "ASFFPN",
    "NECKS",
    "make_neck",
]

_NECK_CLASSES = {"sie_fpn": SIEFPN, "asff": ASFFPN}
_PLAIN_FPN = (None, "fpn", "none")
NECKS = ("fpn",) + tuple(_NECK_CLASSES)


def make_neck(
    name: str | None,
    in_channels_list: Sequence[int],
    out_channels: int,
    extra_blocks: nn.Module | None = None,
    **neck_kwargs: Any,
) -> nn.Module | None:
    """A FeaturePyramidNetwork replacement by name; None for "fpn"/"none"/None (keep torchvision's).

    name: None, "fpn", "none", "sie_fpn" or "asff". `neck_kwargs` go to the neck's constructor
    (e.g. gn_groups=16 for sie_fpn, compress=8 for asff).
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _PLAIN_FPN and key not in _NECK_CLASSES:
        raise ValueError(f"neck must be one of {NECKS} or None, got {name!r}")
    if key in _PLAIN_FPN:
        if neck_kwargs:
            raise ValueError(
                f"neck_kwargs {sorted(neck_kwargs)} given but neck={name!r} is the plain FPN"
            )
        return None
    return _NECK_CLASSES[key](
        list(in_channels_list), out_channels, extra_blocks=extra_blocks, **neck_kwargs
    )
