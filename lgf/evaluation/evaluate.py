"""Evaluation of a model on a loader, in one process or gathered across DDP ranks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn as nn
from pycocotools.coco import COCO

from ..training import distributed as du
from .detections import predict_loader
from .metrics import coco_metrics

__all__ = ["evaluate"]


def evaluate(
    model: nn.Module,
    loader: Iterable,
    coco_gt: COCO,
    label_to_cat_id: Sequence[int],
    device: torch.device,
    progress: bool = False,
    verbose: bool = False,
    amp_dtype: torch.dtype | None = None,
    area_ranges: str = "coco",
) -> dict[str, Any]:
    """Every rank predicts its share of `loader`, rank 0 gathers the detections and scores them
    against `coco_gt` with the buckets of `area_ranges` (lgf.evaluation.metrics), and every rank
    returns the same metric dict."""
    results, seen = predict_loader(
        model, loader, device, label_to_cat_id, progress=progress, amp_dtype=amp_dtype
    )
    gathered = du.all_gather_object((results, seen))
    metrics = None
    if du.get_rank() == 0:
        all_results = [r for part, _ in gathered for r in part]
        all_ids = sorted({i for _, ids in gathered for i in ids})
        metrics = coco_metrics(
            coco_gt, all_results, all_ids, verbose=verbose, area_ranges=area_ranges
        )
    return du.broadcast_object(metrics)
