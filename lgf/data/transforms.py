"""Detection transforms (torchvision transforms v2): boxes (and masks) move with the image.

Training pipelines by `augmentation`, the policies of torchvision's `references/detection`
(`--data-augmentation`), built from `torchvision.transforms.v2`:

- "hflip": random horizontal flip.
- "ssd": photometric distortion, zoom out (canvas up to 4x, filled with the mean colour), IoU
  crop, flip (the SSD recipe).
- "ssdlite": IoU crop and flip.
- "multiscale": flip here; the random resize happens per batch in the trainer (every image of a
  batch at one size, as ASFF trains; torchvision draws a size per image), see
  lgf.training.multiscale.
- "lsj": large-scale jitter: resize to 0.1-2.0 x the square `img_size`, random crop or pad to
  img_size x img_size, flip.

Every training pipeline ends by clamping boxes to the image and dropping those smaller than one
pixel; the number dropped is reported in the target as "dropped_boxes" (the trainer sums it).
Otherwise resizing is left to the model (its GeneralizedRCNNTransform, see --img-size), so
predictions come back in the coordinates of the original image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["AUGMENTATIONS", "DetectionTransform", "build_transforms"]

AUGMENTATIONS = ("hflip", "ssd", "ssdlite", "multiscale", "lsj")
# torchvision's fill colour (123, 117, 104) on [0, 1] images; masks are filled with 0.
_MEAN = (123.0 / 255.0, 117.0 / 255.0, 104.0 / 255.0)
_FILL = {tv_tensors.Image: _MEAN, tv_tensors.Mask: 0}


class DetectionTransform:
    """A v2 pipeline called as (image, target) that also counts the boxes it removed."""

    def __init__(self, steps: list[Callable]):
        self.pipeline = v2.Compose(steps)

    def __call__(self, image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        before = len(target["boxes"])
        image, target = self.pipeline(image, target)
        target["dropped_boxes"] = before - len(target["boxes"])
        return image, target

    def __repr__(self) -> str:
        return f"DetectionTransform({self.pipeline})"


def _to_float() -> v2.Transform:
    return v2.ToDtype(torch.float32, scale=True)


def _policy(augmentation: str, flip: list, img_size: int | None) -> list:
    if augmentation in ("hflip", "multiscale"):
        return flip + [_to_float()]
    if augmentation == "ssdlite":
        return [v2.RandomIoUCrop()] + flip + [_to_float()]
    if augmentation == "ssd":
        return [
            _to_float(),
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomZoomOut(fill=_FILL, side_range=(1.0, 4.0), p=0.5),
            v2.RandomIoUCrop(),
        ] + flip
    if not img_size:
        raise ValueError("augmentation 'lsj' needs the image size (img_size)")
    return [
        _to_float(),
        v2.ScaleJitter(target_size=(img_size, img_size), scale_range=(0.1, 2.0), antialias=True),
        v2.RandomCrop(img_size, pad_if_needed=True, fill=_FILL),
    ] + flip


def build_transforms(
    train: bool, hflip: float = 0.5, augmentation: str = "hflip", img_size: int | None = None
) -> Callable:
    """Train: the `augmentation` policy (AUGMENTATIONS; flips with probability `hflip`), images
    as float in [0, 1], boxes clamped and those under one pixel dropped (counted in
    target["dropped_boxes"]). Eval: float in [0, 1] only. `img_size`: the square side of "lsj"."""
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip}")
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    if not train:
        return v2.Compose([_to_float()])
    flip = [v2.RandomHorizontalFlip(p=hflip)] if hflip > 0 else []
    steps = _policy(augmentation, flip, img_size)
    return DetectionTransform(steps + [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(1.0)])
