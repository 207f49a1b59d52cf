"""`evaluate_checkpoint`: score a trainer checkpoint on a COCO-style set (docs/design.md §5)."""

from __future__ import annotations

import os
from typing import Any

from ..data import CocoDetection, build_transforms, make_loader
from ..modes import model_from_checkpoint
from ..training.checkpoint import load_checkpoint
from ..training.distributed import resolve_device
from ..utils.atomic_write import write_json
from .detections import predict
from .metrics import coco_metrics

__all__ = ["evaluate_checkpoint"]


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
) -> dict[str, Any]:
    """Evaluates a training checkpoint on a COCO-style set; returns the metric dict.

    ckpt_path: a last.pt / best.pt written by the trainer (loaded with weights_only=True).
    use_ema: score the EMA weights when the checkpoint has them (else the raw weights).
    The model is rebuilt from the settings stored in the checkpoint (mode, backbone, image size,
    number of classes); predicted labels map back to the training set's category ids.
    output_json: also write the metrics there. verbose: print pycocotools' summary table.
    """
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
    unknown = set(label_to_cat_id[1:]) - set(dataset.coco.getCatIds())
    if unknown:
        raise ValueError(
            f"{val_ann!r} lacks the categories {sorted(unknown)} that the checkpoint "
            f"{ckpt_path!r} was trained on"
        )
    loader = make_loader(dataset, batch_size, train=False, workers=workers)
    results, seen = predict(model, loader, dev, label_to_cat_id, progress=progress)
    metrics = coco_metrics(dataset.coco, results, seen, verbose=verbose)
    metrics["weights"] = "ema" if used_ema else "model"
    metrics["checkpoint"] = os.path.abspath(ckpt_path)
    metrics["epoch"] = int(ckpt.get("epoch", 0))
    metrics["step"] = int(ckpt.get("step", 0))
    if output_json:
        write_json(metrics, output_json)
    return metrics
