"""RetinaNet (torchvision, ResNet + FPN) with an optional block on one backbone level and an
optional replacement of the FPN (neck); see docs/design.md §4.

`build_retinanet` follows torchvision's `retinanet_resnet50_fpn` code path (ResNet,
`_resnet_fpn_extractor` with returned layers 2, 3, 4 and `LastLevelP6P7(256, 256)`, i.e. v1
semantics), loads torchvision weights if asked, and only then inserts the block
(lgf.insert.insert_block): `model.backbone` becomes a `BackboneWithBlock`, a `BackboneWithFPN`
that keeps the same `body` and `fpn` (so every torchvision state-dict key is unchanged) and adds
`block`, applied to the chosen level between `body` and `fpn`. The other torchvision detectors
are built by lgf.detectors.

    C3 = ResNet layer2 (stride 8), C4 = layer3 (stride 16), C5 = layer4 (stride 32).

A neck (`neck="sie_fpn"` or `"asff"`, see lgf.peers) replaces `backbone.fpn` by a subclass of
torchvision's FeaturePyramidNetwork with the same in/out channels, output keys and FPN module
names; the FPN's (possibly pretrained) weights are copied into it, so again every torchvision
state-dict key is kept and only the neck's new modules add keys.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn
from torchvision.models import resnet
from torchvision.models._api import WeightsEnum
from torchvision.models.detection import RetinaNet, RetinaNet_ResNet50_FPN_Weights
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _resnet_fpn_extractor,
    _validate_trainable_layers,
)
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from .heads import replace_class_head
from .insert import (
    BLOCKS,
    INSERT_LEVELS,
    BackboneWithBlock,
    BlockSpec,
    insert_block,
    make_block,
    normalize_level,
)
from .peers import make_neck

__all__ = [
    "BLOCKS",
    "INSERT_LEVELS",
    "BACKBONES",
    "BackboneWithBlock",
    "make_block",
    "level_channels",
    "verify_weights",
    "build_retinanet",
    "retinanet_resnet18_fpn",
    "retinanet_resnet34_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet101_fpn",
]

_RETURNED_LAYERS = [2, 3, 4]

# backbone -> (torchvision constructor, its weights enum, block expansion: 4 for Bottleneck).
BACKBONES = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights, 1),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights, 1),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights, 4),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights, 4),
}


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")


def level_channels(backbone: str, insert_level: str) -> int:
    """Channels of the ResNet feature at `insert_level` (e.g. 512 for resnet50 C3)."""
    _check_backbone(backbone)
    _, k = INSERT_LEVELS[normalize_level(insert_level)]
    return 64 * 2 ** (k - 1) * BACKBONES[backbone][2]


def _install_neck(backbone_with_fpn: BackboneWithFPN, neck: nn.Module) -> None:
    """Replaces `backbone_with_fpn.fpn` by `neck`, after copying the FPN's weights into it.

    `neck` must hold the FPN's modules under the same names (the lgf.peers necks subclass
    FeaturePyramidNetwork); it may only add keys.
    """
    old = backbone_with_fpn.fpn
    result = neck.load_state_dict(old.state_dict(), strict=False)
    new_keys = set(neck.state_dict()) - set(old.state_dict())
    if result.unexpected_keys or set(result.missing_keys) != new_keys:
        raise RuntimeError(
            f"{type(neck).__name__} does not extend the FPN's state dict: unexpected "
            f"{result.unexpected_keys}, missing {sorted(set(result.missing_keys) - new_keys)}"
        )
    neck.to(next(old.parameters()).device)
    backbone_with_fpn.fpn = neck


def verify_weights(enum: type[WeightsEnum], value: Any, what: str) -> WeightsEnum | None:
    """`enum.verify(value)` (a member, its name, or None) with an error that names `what`."""
    try:
        return enum.verify(value)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{what}={value!r} is not a valid {enum.__name__}: {e}") from e


def _resolve_weights(backbone, weights, weights_backbone, num_classes):
    """(weights, weights_backbone, classes to build with, classes wanted) as torchvision's
    builder settles them; the two class counts differ when the weights' class head is replaced."""
    if weights is not None:
        if backbone != "resnet50":
            raise ValueError(
                "torchvision has RetinaNet weights for resnet50 only; "
                f"use weights=None for {backbone}"
            )
        weights = verify_weights(RetinaNet_ResNet50_FPN_Weights, weights, "weights")
        n_categories = len(weights.meta["categories"])
        return weights, None, n_categories, num_classes or n_categories
    weights_backbone = verify_weights(BACKBONES[backbone][1], weights_backbone, "weights_backbone")
    return None, weights_backbone, num_classes or 91, num_classes or 91


def _resnet_with_fpn(backbone, weights_backbone, trainable_layers, is_trained, progress):
    trainable_layers = _validate_trainable_layers(is_trained, trainable_layers, 5, 3)
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    body = BACKBONES[backbone][0](
        weights=weights_backbone, progress=progress, norm_layer=norm_layer
    )
    return _resnet_fpn_extractor(
        body,
        trainable_layers,
        returned_layers=_RETURNED_LAYERS,
        extra_blocks=LastLevelP6P7(256, 256),
    )


def _load_retinanet_weights(model: RetinaNet, weights, progress: bool) -> None:
    if weights is None:
        return
    model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    if weights == RetinaNet_ResNet50_FPN_Weights.COCO_V1:
        overwrite_eps(model, 0.0)


def _pretrained_retinanet(
    backbone, num_classes, weights, weights_backbone, progress, trainable_layers, **kwargs
) -> RetinaNet:
    """The plain RetinaNet with torchvision's weights loaded (class head replaced if needed)."""
    weights, weights_backbone, build_classes, num_classes = _resolve_weights(
        backbone, weights, weights_backbone, num_classes
    )
    is_trained = weights is not None or weights_backbone is not None
    fpn_backbone = _resnet_with_fpn(
        backbone, weights_backbone, trainable_layers, is_trained, progress
    )
    model = RetinaNet(fpn_backbone, build_classes, **kwargs)
    _load_retinanet_weights(model, weights, progress)
    if num_classes != build_classes:
        replace_class_head(model, num_classes)
    return model


def build_retinanet(
    backbone: str = "resnet50",
    block: BlockSpec = None,
    insert_level: str = "C3",
    num_classes: int | None = None,
    weights: RetinaNet_ResNet50_FPN_Weights | str | None = None,
    weights_backbone: WeightsEnum | str | None = None,
    gate: str = "sigmoid",
    block_kwargs: dict | None = None,
    neck: str | None = None,
    neck_kwargs: dict | None = None,
    *,
    progress: bool = True,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet with `backbone` (resnet18, resnet34, resnet50 or resnet101) + FPN, torchvision's
    v1 recipe, with an optional block before the FPN.

    Args:
        backbone: one of BACKBONES.
        block: None / "none" / "baseline" (plain torchvision model), "lgf", "lgf_paper", "se",
            "cbam", "glmd", or a callable `block(channels, **block_kwargs)`.
        insert_level: "C3" (layer2), "C4" (layer3) or "C5" (layer4).
        num_classes: classes including background (default 91, or the weights' classes). With
            `weights` of another class count, everything but the classification head's last
            layer is loaded and that layer is re-initialised (lgf.heads.replace_class_head).
        weights: torchvision RetinaNet weights (enum or name, resnet50 only), loaded before the
            block is inserted; they hold the backbone too, so `weights_backbone` is ignored.
        weights_backbone: torchvision ImageNet weights of the ResNet (enum or name).
        gate: LGF gate mode ("sigmoid", "sum", "softmax"); block="lgf" only.
        block_kwargs: dict of extra block constructor arguments (e.g. {"backend": "reference"}).
        neck: None / "fpn" (torchvision's), "sie_fpn" or "asff" (lgf.peers): replaces the FPN
            once the weights are loaded, taking over the FPN's weights.
        neck_kwargs: dict of extra neck constructor arguments (e.g. {"compress": 8} for asff).
        progress, trainable_backbone_layers (0-5, pretrained weights only): as in torchvision.
        **kwargs: passed to torchvision.models.detection.RetinaNet (min_size, max_size, ...).
    """
    _check_backbone(backbone)
    level = normalize_level(insert_level)
    # Build the block and neck first: a bad name fails before any weights are downloaded.
    block_module = make_block(
        block, level_channels(backbone, level), gate=gate, **(block_kwargs or {})
    )
    in_channels_list = [level_channels(backbone, f"C{k + 1}") for k in _RETURNED_LAYERS]
    neck_module = make_neck(
        neck, in_channels_list, 256, LastLevelP6P7(256, 256), **(neck_kwargs or {})
    )
    model = _pretrained_retinanet(
        backbone, num_classes, weights, weights_backbone, progress, trainable_backbone_layers,
        **kwargs,
    )  # fmt: skip
    if neck_module is not None:
        _install_neck(model.backbone, neck_module)
    if block_module is not None:
        insert_block(model, level, block_module)
    return model


def _builder_signature() -> inspect.Signature:
    """build_retinanet's parameters without `backbone`, all keyword-only (as torchvision's)."""
    params = list(inspect.signature(build_retinanet).parameters.values())[1:]
    return inspect.Signature(
        [p if p.kind is p.VAR_KEYWORD else p.replace(kind=p.KEYWORD_ONLY) for p in params],
        return_annotation=RetinaNet,
    )


def _make_builder(depth: str) -> Callable[..., RetinaNet]:
    def builder(**kwargs: Any) -> RetinaNet:
        return build_retinanet(depth, **kwargs)

    builder.__name__ = builder.__qualname__ = f"retinanet_{depth}_fpn"
    builder.__signature__ = _builder_signature()
    builder.__doc__ = (
        f"RetinaNet {depth.replace('resnet', 'ResNet-')} + FPN (torchvision v1 recipe), with an "
        f"optional block before the FPN: `build_retinanet({depth!r}, ...)`, whose arguments "
        "(all but `backbone`) it takes as keywords."
    )
    return builder


retinanet_resnet18_fpn = _make_builder("resnet18")
retinanet_resnet34_fpn = _make_builder("resnet34")
retinanet_resnet50_fpn = _make_builder("resnet50")
retinanet_resnet101_fpn = _make_builder("resnet101")
