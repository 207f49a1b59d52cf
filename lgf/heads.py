"""The class-dependent layers of torchvision's detectors, re-initialised for a new class count.

Starting from weights trained on another label set (COCO's 91 classes, or one of our checkpoints
with another class count) keeps everything but the layers whose shape depends on the number of
classes; those are built anew, initialised as torchvision initialises them:

- RetinaNet (v1, v2) and FCOS: the classification head's last conv `cls_logits` (normal std 0.01,
  bias -log((1 - 0.01) / 0.01), the focal-loss prior).
- Faster R-CNN (v1, v2): the box predictor (class scores and per-class box deltas).
- Mask R-CNN: the box predictor and the mask predictor.
"""

from __future__ import annotations

import math

import torch.nn as nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

__all__ = ["CLASS_HEAD_PREFIXES", "class_head_prefixes", "num_classes_of", "replace_class_head"]

_PRIOR = 0.01  # torchvision's prior_probability of the focal-loss heads

# detector class -> the state-dict prefixes of its class-dependent layers
CLASS_HEAD_PREFIXES = {
    RetinaNet: ("head.classification_head.cls_logits.",),
    FCOS: ("head.classification_head.cls_logits.",),
    MaskRCNN: ("roi_heads.box_predictor.", "roi_heads.mask_predictor."),
    FasterRCNN: ("roi_heads.box_predictor.",),
}


def _kind(model: nn.Module) -> type:
    for cls in CLASS_HEAD_PREFIXES:  # MaskRCNN before its base class FasterRCNN
        if isinstance(model, cls):
            return cls
    raise TypeError(
        "expected a torchvision RetinaNet, FCOS, FasterRCNN or MaskRCNN, got "
        f"{type(model).__name__}"
    )


def class_head_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the class-dependent layers of `model`."""
    return CLASS_HEAD_PREFIXES[_kind(model)]


def num_classes_of(model: nn.Module) -> int:
    """Classes (with the background) that the detector's head predicts."""
    if _kind(model) in (RetinaNet, FCOS):
        return int(model.head.classification_head.num_classes)
    return int(model.roi_heads.box_predictor.cls_score.out_features)


def _new_cls_logits(head: nn.Module, num_classes: int) -> None:
    old = head.cls_logits
    anchors = old.out_channels // head.num_classes
    new = nn.Conv2d(old.in_channels, anchors * num_classes, kernel_size=3, stride=1, padding=1)
    nn.init.normal_(new.weight, std=0.01)
    nn.init.constant_(new.bias, -math.log((1 - _PRIOR) / _PRIOR))
    head.cls_logits = new.to(device=old.weight.device, dtype=old.weight.dtype)
    head.num_classes = num_classes


def replace_class_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Rebuilds the class-dependent layers of `model` for `num_classes` classes (with the
    background), in place; returns the model."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + 1), got {num_classes}")
    kind = _kind(model)
    if kind in (RetinaNet, FCOS):
        _new_cls_logits(model.head.classification_head, num_classes)
        return model
    heads = model.roi_heads
    box = heads.box_predictor
    ref = box.cls_score.weight
    heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_classes).to(
        device=ref.device, dtype=ref.dtype
    )
    if kind is MaskRCNN:
        up = heads.mask_predictor.conv5_mask
        heads.mask_predictor = MaskRCNNPredictor(up.in_channels, up.out_channels, num_classes).to(
            device=ref.device, dtype=ref.dtype
        )
    return model
