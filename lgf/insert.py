"""A block on one ResNet level of a torchvision detector's backbone (docs/design.md §4).

Every torchvision ResNet-FPN detector (RetinaNet v1/v2, FCOS, Faster R-CNN v1/v2, Mask R-CNN)
holds a `BackboneWithFPN`: `body` (the ResNet's layers, returning some of them) then `fpn`.
`insert_block` replaces it by a `BackboneWithBlock`, which reuses the same `body` and `fpn` and
applies the block to one body feature in between, so every state-dict key of the detector is kept
and only `backbone.block.*` is added; the FPN's input and output channels are unchanged.

    C3 = ResNet layer2 (stride 8), C4 = layer3 (stride 16), C5 = layer4 (stride 32).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import torch
import torch.nn as nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN

from .blocks import CBAM, GATES, LGF, SE, LGFPaper
from .peers import GLMD

__all__ = [
    "BLOCKS",
    "INSERT_LEVELS",
    "BackboneWithBlock",
    "BlockSpec",
    "insert_block",
    "layer_channels",
    "make_block",
    "normalize_level",
]

_BLOCK_CLASSES = {"lgf": LGF, "lgf_paper": LGFPaper, "se": SE, "cbam": CBAM, "glmd": GLMD}
_NO_BLOCK = (None, "none", "baseline")
BLOCKS = ("none", "baseline") + tuple(_BLOCK_CLASSES)

# insert level -> (ResNet layer, index k of layer{k})
INSERT_LEVELS = {"C3": ("layer2", 2), "C4": ("layer3", 3), "C5": ("layer4", 4)}

BlockSpec = Union[str, Callable[..., nn.Module], None]


def normalize_level(insert_level: str) -> str:
    """ "c3" or "C3" -> "C3"; ValueError for a level outside INSERT_LEVELS."""
    key = insert_level.upper() if isinstance(insert_level, str) else insert_level
    if key not in INSERT_LEVELS:
        raise ValueError(
            f"insert_level must be one of {tuple(INSERT_LEVELS)}, got {insert_level!r}"
        )
    return key


def make_block(
    block: BlockSpec, channels: int, *, gate: str = "sigmoid", **block_kwargs: Any
) -> nn.Module | None:
    """Build a block by name for `channels` input channels; None for no block.

    block: None, "none", "baseline", "lgf", "lgf_paper", "se", "cbam", "glmd", or a callable
        `block(channels, **block_kwargs) -> nn.Module`. `gate` ("sigmoid", "sum", "softmax")
        applies to "lgf" only; `block_kwargs` go to the block's constructor (e.g.
        backend="reference" or gn_groups=16 for LGF, reduction=8 for SE/CBAM).
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    if callable(block) and not isinstance(block, str):
        return block(channels, **block_kwargs)
    name = block.lower() if isinstance(block, str) else block
    if name not in _NO_BLOCK and name not in _BLOCK_CLASSES:
        raise ValueError(f"block must be one of {BLOCKS}, None, or a callable; got {block!r}")
    if name != "lgf" and gate != "sigmoid":
        raise ValueError(f"gate={gate!r} applies to block='lgf' only (got block={block!r})")
    if name in _NO_BLOCK:
        if block_kwargs:
            raise ValueError(
                f"block_kwargs {sorted(block_kwargs)} given but block={block!r} builds no block"
            )
        return None
    if name == "lgf":
        if "gate" in block_kwargs:
            raise ValueError("pass the LGF gate as gate=..., not inside block_kwargs")
        return LGF(channels, gate=gate, **block_kwargs)
    return _BLOCK_CLASSES[name](channels, **block_kwargs)


class BackboneWithBlock(BackboneWithFPN):
    """`BackboneWithFPN` with a block on one body feature: body -> block(feature) -> fpn.

    It reuses the given `body` and `fpn` modules (no copies), so its state-dict keys are the
    torchvision ones plus `block.*`. `out_channels` is the FPN's.
    """

    def __init__(
        self, backbone_with_fpn: BackboneWithFPN, block: nn.Module, insert_level: str = "C3"
    ):
        # Deliberately skips BackboneWithFPN.__init__, which would build a new body and FPN.
        nn.Module.__init__(self)
        if not isinstance(backbone_with_fpn, BackboneWithFPN):
            raise TypeError(
                "backbone_with_fpn must be a torchvision BackboneWithFPN, "
                f"got {type(backbone_with_fpn).__name__}"
            )
        level = normalize_level(insert_level)
        layer, _ = INSERT_LEVELS[level]
        feature = backbone_with_fpn.body.return_layers.get(layer)
        if feature is None:
            raise ValueError(
                f"insert_level {level} ({layer}) is not among the body's returned layers"
            )
        self.body = backbone_with_fpn.body
        self.fpn = backbone_with_fpn.fpn
        self.out_channels = backbone_with_fpn.out_channels
        self.block = block
        self.insert_level = level
        self.feature_name = feature

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.body(x)
        feats[self.feature_name] = self.block(feats[self.feature_name])
        return self.fpn(feats)

    def extra_repr(self) -> str:
        return f"insert_level={self.insert_level!r}, feature={self.feature_name!r}"


def layer_channels(body: nn.Module, layer: str) -> int:
    """Output channels of a ResNet layer of a backbone body (the last conv of its last block)."""
    module = getattr(body, layer, None)
    if not isinstance(module, nn.Sequential) or len(module) == 0:
        raise ValueError(f"the backbone body has no ResNet layer {layer!r}")
    convs = [m for m in module[-1].modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


def insert_block(
    model: nn.Module,
    level: str = "C3",
    block: BlockSpec | nn.Module = "lgf",
    *,
    gate: str = "sigmoid",
    **block_kwargs: Any,
) -> nn.Module:
    """Puts a block on ResNet level `level` of a detector built by torchvision's (or lgf's)
    builders, in place; returns the model.

    model: a detector whose `backbone` is a torchvision BackboneWithFPN: fasterrcnn_resnet50_fpn,
        fasterrcnn_resnet50_fpn_v2, fcos_resnet50_fpn, retinanet_resnet50_fpn(_v2),
        maskrcnn_resnet50_fpn, lgf.build_retinanet, ...
    level: "C3" (layer2), "C4" (layer3) or "C5" (layer4).
    block: a name of BLOCKS ("lgf", "lgf_paper", "se", "cbam", "glmd"; "none", "baseline" and
        None leave the model as it is), a callable `block(channels, **block_kwargs)`, or a built
        nn.Module. `gate` and `block_kwargs` as in `make_block`.
    The block goes to the device and dtype of the backbone; the FPN's channels do not change.
    """
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, BackboneWithBlock):
        raise ValueError(f"the model already has a block ({type(backbone.block).__name__})")
    if not isinstance(backbone, BackboneWithFPN):
        raise TypeError(
            "insert_block needs a detector whose backbone is a torchvision BackboneWithFPN, got "
            f"{type(backbone).__name__}"
        )
    key = normalize_level(level)
    if isinstance(block, nn.Module):
        module = block
    else:
        channels = layer_channels(backbone.body, INSERT_LEVELS[key][0])
        module = make_block(block, channels, gate=gate, **block_kwargs)
    if module is None:
        return model
    reference = next(backbone.parameters())
    module.to(device=reference.device, dtype=reference.dtype)
    model.backbone = BackboneWithBlock(backbone, module, key)
    return model
