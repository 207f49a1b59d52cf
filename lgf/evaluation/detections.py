"""A detection model's predictions as COCO result dicts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

__all__ = ["predictions_to_coco", "predict"]


def predictions_to_coco(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    label_to_cat_id: Sequence[int],
) -> list[dict[str, Any]]:
    """Model outputs (XYXY boxes, labels 1..K, scores) -> COCO result dicts (XYWH, category ids).

    label_to_cat_id[label] is the annotation file's category id of a label (entry 0 unused);
    labels outside 1..K are dropped."""
    results = []
    for out, img_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for b, s, lab in zip(xywh, scores, labels):
            if not 0 < lab < len(label_to_cat_id):
                continue
            results.append(
                {
                    "image_id": int(img_id),
                    "category_id": int(label_to_cat_id[lab]),
                    "bbox": [round(float(v), 3) for v in b],
                    "score": round(float(s), 5),
                }
            )
    return results


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    label_to_cat_id: Sequence[int],
    progress: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Runs the model over `loader` (this rank's share); returns (COCO results, image ids seen)."""
    was_training = model.training
    model.eval()
    results, seen = [], []
    it = loader
    if progress:
        it = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True, disable=None)
    for images, targets in it:
        images = [im.to(device, non_blocking=True) for im in images]
        with torch.autocast(
            device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None
        ):
            outputs = model(images)
        ids = [t["image_id"] for t in targets]
        results.extend(predictions_to_coco(outputs, ids, label_to_cat_id))
        seen.extend(ids)
    model.train(was_training)
    return results, seen
