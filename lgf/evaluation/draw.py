"""Pictures of COCO result records over their image, with torchvision.utils.draw_bounding_boxes."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from ..utils.atomic_write import atomic_write

__all__ = ["draw_records"]

# one colour per category id (cycled), readable on photographs
_PALETTE = (
    (0, 255, 0),
    (255, 64, 64),
    (64, 160, 255),
    (255, 200, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (160, 96, 255),
)


def _uint8(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image.cpu()
    return image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def draw_records(
    image: torch.Tensor,
    records: Sequence[Mapping[str, Any]],
    path: str,
    class_names: Mapping[int, str] | None = None,
) -> str:
    """Writes `image` ((3, H, W), float in [0, 1] or uint8) with the boxes of `records` (COCO
    result dicts: bbox [x, y, w, h], category_id, score), each labelled "<class> <score>", as a
    PNG at `path`; returns the path. class_names: category id -> name (default: the id)."""
    canvas = _uint8(image)
    if records:
        boxes = torch.tensor(
            [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in records)],
            dtype=torch.float32,
        )
        names = class_names or {}
        labels = [
            f"{names.get(r['category_id'], r['category_id'])} {r['score']:.2f}" for r in records
        ]
        colors = [_PALETTE[int(r["category_id"]) % len(_PALETTE)] for r in records]
        width = max(1, round(min(canvas.shape[-2:]) / 400))
        canvas = draw_bounding_boxes(canvas, boxes, labels=labels, colors=colors, width=width)
    picture = Image.fromarray(canvas.permute(1, 2, 0).contiguous().numpy(), "RGB")
    with atomic_write(os.fspath(path), "wb") as f:
        picture.save(f, format="PNG")
    return path
