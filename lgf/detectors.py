"""Every torchvision ResNet-FPN detector with an optional block (docs/design.md §4).

`build_detector(detector, ...)` builds "retinanet" with lgf.models.build_retinanet (ResNet-18 to
-101, necks) and the others with torchvision's own builders (ResNet-50), then inserts the block
with lgf.insert.insert_block. `DETECTORS` holds what differs between them: the builder, its
weights enum, whether it freezes the backbone's batch norms when it starts from pretrained
weights, the weights whose batch-norm epsilon torchvision sets to 0, the name of its score
threshold, how `--anchor-sizes` become its anchors, and whether it needs instance masks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch.nn as nn
from torchvision.models import ResNet50_Weights
from torchvision.models.detection import (
    FasterRCNN_ResNet50_FPN_V2_Weights,
    FasterRCNN_ResNet50_FPN_Weights,
    FCOS_ResNet50_FPN_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    RetinaNet_ResNet50_FPN_V2_Weights,
    RetinaNet_ResNet50_FPN_Weights,
    fasterrcnn_resnet50_fpn,
    fasterrcnn_resnet50_fpn_v2,
    fcos_resnet50_fpn,
    maskrcnn_resnet50_fpn,
    retinanet_resnet50_fpn_v2,
)
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops.misc import FrozenBatchNorm2d

from .heads import num_classes_of, replace_class_head
from .insert import BlockSpec, insert_block, make_block
from .models import build_retinanet, verify_weights

__all__ = [
    "DETECTORS",
    "DetectorSpec",
    "anchor_kwargs",
    "build_detector",
    "match_pretrained_structure",
]


@dataclass(frozen=True)
class DetectorSpec:
    builder: Callable[..., nn.Module] | None  # torchvision's; None: lgf.models.build_retinanet
    weights: type  # its torchvision weights enum
    frozen_bn_when_pretrained: bool  # FrozenBatchNorm2d in the ResNet when weights are given
    zero_eps_weights: str | None  # the weights after which torchvision sets BN eps to 0
    score_kwarg: str  # the builder's minimum detection score argument
    anchors: str  # "retinanet" (3 scales x 3 ratios per size), "rpn" (1 x 3) or "none"
    masks: bool = False  # trains on instance masks


DETECTORS = {
    "retinanet": DetectorSpec(
        None, RetinaNet_ResNet50_FPN_Weights, True, "COCO_V1", "score_thresh", "retinanet"
    ),
    "retinanet_v2": DetectorSpec(
        retinanet_resnet50_fpn_v2,
        RetinaNet_ResNet50_FPN_V2_Weights,
        False,
        None,
        "score_thresh",
        "retinanet",
    ),
    "fcos": DetectorSpec(
        fcos_resnet50_fpn, FCOS_ResNet50_FPN_Weights, True, None, "score_thresh", "none"
    ),
    "fasterrcnn": DetectorSpec(
        fasterrcnn_resnet50_fpn,
        FasterRCNN_ResNet50_FPN_Weights,
        True,
        "COCO_V1",
        "box_score_thresh",
        "rpn",
    ),
    "fasterrcnn_v2": DetectorSpec(
        fasterrcnn_resnet50_fpn_v2,
        FasterRCNN_ResNet50_FPN_V2_Weights,
        False,
        None,
        "box_score_thresh",
        "rpn",
    ),
    "maskrcnn": DetectorSpec(
        maskrcnn_resnet50_fpn,
        MaskRCNN_ResNet50_FPN_Weights,
        True,
        "COCO_V1",
        "box_score_thresh",
        "rpn",
        masks=True,
    ),
}


def _spec(detector: str) -> DetectorSpec:
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {tuple(DETECTORS)}, got {detector!r}")
    return DETECTORS[detector]


def anchor_kwargs(detector: str, sizes: Sequence[int] | None) -> dict[str, Any]:
    """Builder keyword arguments that set the anchor base sizes of the five FPN levels (None:
    the detector's defaults). RetinaNet: 3 scales per octave x ratios 0.5, 1, 2 around each
    size (torchvision's default is 32 64 128 256 512); Faster/Mask R-CNN: the RPN's anchors, one
    size x 3 ratios per level (same default). FCOS is anchor-free and refuses sizes."""
    kind = _spec(detector).anchors
    if sizes is None:
        return {}
    sizes = [int(s) for s in sizes]
    if len(sizes) != 5 or min(sizes) < 1:
        raise ValueError(f"anchor sizes need 5 positive values (one per FPN level), got {sizes}")
    if kind == "none":
        raise ValueError(f"anchor sizes do not apply to {detector!r}, which has no anchors")
    ratios = ((0.5, 1.0, 2.0),) * 5
    if kind == "rpn":
        return {"rpn_anchor_generator": AnchorGenerator(tuple((s,) for s in sizes), ratios)}
    octaves = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes)
    return {"anchor_generator": AnchorGenerator(octaves, ratios)}


def _torchvision_detector(
    spec: DetectorSpec, weights, weights_backbone, num_classes, **kwargs: Any
) -> nn.Module:
    weights = verify_weights(spec.weights, weights, "weights")
    weights_backbone = verify_weights(ResNet50_Weights, weights_backbone, "weights_backbone")
    if weights is not None:
        weights_backbone = None  # the detector's weights hold the backbone
    model = spec.builder(
        weights=weights,
        weights_backbone=weights_backbone,
        num_classes=None if weights is not None else (num_classes or 91),
        **kwargs,
    )
    if num_classes and num_classes != num_classes_of(model):
        replace_class_head(model, num_classes)
    return model


def build_detector(
    detector: str = "retinanet",
    backbone: str = "resnet50",
    block: BlockSpec = None,
    insert_level: str = "C3",
    num_classes: int | None = None,
    weights: Any = None,
    weights_backbone: Any = None,
    gate: str = "sigmoid",
    block_kwargs: dict | None = None,
    neck: str | None = None,
    neck_kwargs: dict | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A torchvision detector with an optional block on one ResNet level.

    detector: one of DETECTORS. "retinanet" is lgf.models.build_retinanet (every argument as
        there); the others are torchvision's `<detector>_resnet50_fpn` builders, so `backbone`
        must be "resnet50" and `neck` None / "fpn".
    weights: the detector's torchvision weights (enum or name, e.g. "DEFAULT", "COCO_V1");
        with another `num_classes` the class-dependent layers are re-initialised
        (lgf.heads.replace_class_head). weights_backbone: ImageNet weights of the ResNet.
    block, insert_level, gate, block_kwargs: as in lgf.insert.insert_block.
    **kwargs: to the builder (min_size, max_size, progress, trainable_backbone_layers, ...).
    """
    if detector == "retinanet":
        return build_retinanet(
            backbone, block, insert_level, num_classes, weights, weights_backbone, gate,
            block_kwargs, neck, neck_kwargs, **kwargs,
        )  # fmt: skip
    spec = _spec(detector)
    if backbone != "resnet50":
        raise ValueError(
            f"detector {detector!r} is torchvision's {spec.builder.__name__}: backbone must be "
            f"'resnet50', got {backbone!r} (other depths: detector 'retinanet')"
        )
    if neck not in (None, "fpn", "none") or neck_kwargs:
        raise ValueError(f"necks replace RetinaNet's FPN only; detector {detector!r} has neck=None")
    make_block(block, 8, gate=gate, **(block_kwargs or {}))  # a bad block fails before downloads
    model = _torchvision_detector(spec, weights, weights_backbone, num_classes, **kwargs)
    return insert_block(model, insert_level, block, gate=gate, **(block_kwargs or {}))


def _freeze_batch_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            setattr(module, name, frozen.to(child.weight.device))
        else:
            _freeze_batch_norms(child)


def match_pretrained_structure(
    model: nn.Module, detector: str, weights: Any, weights_backbone: Any
) -> nn.Module:
    """Makes a model built without downloads (weights=None, weights_backbone=None) hold the
    modules that the builder makes when it loads pretrained weights: FrozenBatchNorm2d in the
    ResNet where the builder freezes them, batch-norm epsilon 0 after the weights whose
    epsilon torchvision zeroes. A checkpoint of the pretrained run then loads and computes the
    same. In place; returns the model."""
    spec = _spec(detector)
    if spec.frozen_bn_when_pretrained and (weights or weights_backbone):
        _freeze_batch_norms(model.backbone.body)
    member = verify_weights(spec.weights, weights, "weights")
    if member is not None and member.name == spec.zero_eps_weights:
        overwrite_eps(model, 0.0)
    return model
