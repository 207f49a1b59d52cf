"""A detection model's predictions as COCO result dicts: the one conversion every writer of
detections uses (evaluation, train.evaluate's detections file, lgf.predict)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

__all__ = ["predictions_to_coco", "predict_loader"]


def predictions_to_coco(
    outputs: Sequence[dict[str, torch.Tensor]],
    image_ids: Sequence[int],
    label_to_cat_id: Sequence[int] | None,
    file_names: Sequence[str] | None = None,
    score_thresh: float = 0.0,
) -> list[dict[str, Any]]:
    """Model outputs (XYXY boxes in the original image's pixels, labels 1..K, scores) -> COCO
    result dicts: image_id, category_id, bbox [x, y, w, h] (3 decimals), score (5 decimals).

    label_to_cat_id[label] is the annotation file's category id of a label (entry 0 unused;
    None: the label itself); labels outside 1..K and scores below `score_thresh` are dropped.
    file_names: also record each image's file name ("file_name")."""
    results = []
    for i, (out, img_id) in enumerate(zip(outputs, image_ids)):
        boxes = out["boxes"].detach().float().cpu()
        if boxes.numel() == 0:
            continue
        scores = out["scores"].detach().float().cpu().tolist()
        labels = out["labels"].detach().cpu().tolist()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        extra = {"file_name": file_names[i]} if file_names is not None else {}
        for b, s, lab in zip(xywh, scores, labels):
            known = lab > 0 if label_to_cat_id is None else 0 < lab < len(label_to_cat_id)
            if not known or s < score_thresh:
                continue
            results.append(
                {
                    "image_id": int(img_id),
                    "category_id": int(lab if label_to_cat_id is None else label_to_cat_id[lab]),
                    "bbox": [round(float(v), 3) for v in b],
                    "score": round(float(s), 5),
                    **extra,
                }
            )
    return results


@torch.no_grad()
def predict_loader(
    model: nn.Module,
    loader: Iterable,
    device: torch.device,
    label_to_cat_id: Sequence[int],
    progress: bool = False,
    amp_dtype: torch.dtype | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Runs the model over `loader` (this rank's share of a COCO-style set); returns (COCO
    results, image ids seen)."""
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
