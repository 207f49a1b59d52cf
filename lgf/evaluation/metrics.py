"""COCO box metrics of a result list, with pycocotools (docs/design.md §5).

Metric keys: `METRIC_NAMES` (pycocotools' 12 summary numbers; -1 where the ground truth has no
box of that kind), per_class_AP and per_class_AP_small ({class name: value}), num_images,
num_detections. An empty list of detections is scored like any other (0 where there are boxes to
find, -1 where there are none), through an empty result set since pycocotools cannot load an
empty list.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["METRIC_NAMES", "coco_metrics"]

# The order of COCOeval.stats.
METRIC_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)


def _empty_results(coco_gt):
    """A result set with no detection (COCO.loadRes cannot take an empty list): COCOeval then gives
    pycocotools' own numbers, 0 where the ground truth has boxes and -1 where it has none."""
    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _per_class(precision: np.ndarray, num_classes: int, area_index: int) -> list[float]:
    out = []
    for k in range(num_classes):
        p = precision[:, :, k, area_index, -1]
        p = p[p > -1]
        out.append(float(np.mean(p)) if p.size else -1.0)
    return out


def coco_metrics(
    coco_gt: COCO,
    results: list[dict],
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Runs COCOeval (bbox) over `image_ids` (default: every image of coco_gt), a pycocotools COCO
    index; returns the metric dict. Images with no detection count as misses, also when there is
    no detection at all. verbose: print pycocotools' summary table."""
    image_ids = sorted(coco_gt.getImgIds() if image_ids is None else image_ids)
    cat_ids = sorted(coco_gt.getCatIds())
    names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    metrics = {"num_images": len(image_ids), "num_detections": len(results)}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        coco_dt = coco_gt.loadRes(results) if results else _empty_results(coco_gt)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    if verbose:
        print(buf.getvalue(), end="")
    metrics.update({k: float(v) for k, v in zip(METRIC_NAMES, ev.stats)})
    precision = ev.eval["precision"]  # [IoU thresholds, recall, class, area, max dets]
    metrics["per_class_AP"] = dict(zip(names, _per_class(precision, len(cat_ids), 0)))
    metrics["per_class_AP_small"] = dict(zip(names, _per_class(precision, len(cat_ids), 1)))
    return metrics
