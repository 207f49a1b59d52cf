"""Detection transforms (torchvision transforms v2): boxes move with the image.

Resizing is left to the model (RetinaNet's GeneralizedRCNNTransform, see --img-size), so
predictions come back in the coordinates of the original image.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


def build_transforms(train: bool, hflip: float = 0.5) -> v2.Compose:
    """Train: random horizontal flip (probability `hflip`), float in [0, 1], drop boxes that became
    smaller than one pixel. Eval: float in [0, 1] only."""
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip must be a probability in [0, 1], got {hflip}")
    steps = []
    if train and hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train:
        steps.append(v2.SanitizeBoundingBoxes(min_size=1.0))
    return v2.Compose(steps)
