"""`evaluate_checkpoint`: score a trainer checkpoint on a COCO-style set (docs/design.md §5)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pycocotools.coco import COCO

from ..data import CocoDetection, build_transforms, make_loader
from ..modes import model_from_checkpoint
from ..training.checkpoint import load_checkpoint
from ..training.distributed import resolve_device
from ..utils.atomic_write import write_json
from .area_ranges import area_protocol
from .detections import predict_loader
from .metrics import coco_metrics

__all__ = ["evaluate_checkpoint", "check_categories"]


def check_categories(
    label_to_cat_id: Sequence[int], coco: COCO, ann_file: str, ckpt_path: str
) -> None:
    """Refuses an annotation file that lacks a category the checkpoint predicts."""
    unknown = set(label_to_cat_id[1:]) - set(coco.getCatIds())
    if unknown:
        raise ValueError(
            f"{ann_file!r} lacks the categories {sorted(unknown)} that the checkpoint "
            f"{ckpt_path!r} was trained on"
        )


def evaluate_checkpoint(
    ckpt_path: str,
    val_img: str,
    val_ann: str,
    use_ema: bool = True,
    batch_size: int = 4,
    device: str = "auto",
    workers: int = 0,
    max_images: int | None = None,
    output_json: str | None = None,
    progress: bool = False,
    verbose: bool = False,
    area_ranges: str = "coco",
    detections_json: str | None = None,
) -> dict[str, Any]:
    """Evaluates a training checkpoint on a COCO-style set; returns the metric dict.

    ckpt_path: a last.pt / best.pt written by the trainer (loaded with weights_only=True).
    use_ema: score the EMA weights when the checkpoint has them (else the raw weights).
    The model is rebuilt from the settings stored in the checkpoint (mode, backbone, image size,
    number of classes); predicted labels map back to the training set's category ids.
    area_ranges: the size buckets, "coco" or "tiny" (lgf.evaluation.area_ranges).
    output_json: also write the metrics there. detections_json: also write the scored detections
    there, in COCO results format (its path is recorded as metrics["detections"]).
    verbose: print the summary table.
    """
    area_protocol(area_ranges)  # a bad name fails before the model is built
    ckpt = load_checkpoint(ckpt_path)
    dev = resolve_device(device)
    model, used_ema = model_from_checkpoint(ckpt, use_ema=use_ema, source=repr(ckpt_path))
    model.to(dev)
    dataset = CocoDetection(
        val_img,
        val_ann,
        transforms=build_transforms(False),
        max_images=max_images,
        name="val",
        img_size=model.transform.max_size,  # the model's resize: refuse what it cannot take
    )
    label_to_cat_id = list(ckpt.get("label_to_cat_id") or dataset.label_to_cat_id)
    check_categories(label_to_cat_id, dataset.coco, val_ann, ckpt_path)
    loader = make_loader(dataset, batch_size, train=False, workers=workers)
    results, seen = predict_loader(model, loader, dev, label_to_cat_id, progress=progress)
    metrics = coco_metrics(dataset.coco, results, seen, verbose=verbose, area_ranges=area_ranges)
    metrics["weights"] = "ema" if used_ema else "model"
    metrics["checkpoint"] = os.path.abspath(ckpt_path)
    metrics["epoch"] = int(ckpt.get("epoch", 0))
    metrics["step"] = int(ckpt.get("step", 0))
    if detections_json:
        write_json(results, detections_json, indent=None)
        metrics["detections"] = os.path.abspath(detections_json)
    if output_json:
        write_json(metrics, output_json)
    return metrics
