"""COCO box metrics of a result list, with pycocotools (docs/design.md §5).

COCOeval runs with the buckets and detection caps of an area protocol (`lgf.evaluation.
area_ranges`: "coco" or "tiny"); the summary numbers are read from its accumulated
`eval["precision"]` and `eval["recall"]` here rather than by `COCOeval.summarize()`, which knows
only COCO's three buckets. For the coco protocol they equal summarize()'s numbers exactly (a test
checks it). Metric keys: the protocol's metric names (-1 where the ground truth has no box of that
size), per_class_AP and per_class_AP_<bucket> ({class name: value}), area_ranges, num_images,
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

from .area_ranges import COCO_AREAS, AreaProtocol, area_protocol

__all__ = ["METRIC_NAMES", "coco_metrics", "summary_stats", "summary_lines"]

# The coco protocol's metric names, in the order of COCOeval.stats.
METRIC_NAMES = COCO_AREAS.metric_names


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


def _mean_defined(values: np.ndarray) -> float:
    # pycocotools' rule: -1 marks "no ground truth here"; the mean of what is left, else -1
    kept = values[values > -1]
    return float(np.mean(kept)) if kept.size else -1.0


def _stat(ev: COCOeval, kind: str, area: int, max_det: int, iou: float | None = None) -> float:
    """One summary number, sliced from COCOeval.eval as COCOeval.summarize() slices it:
    precision [T, R, K, A, M] for "AP", recall [T, K, A, M] for "AR"."""
    s = ev.eval["precision" if kind == "AP" else "recall"]
    if iou is not None:
        s = s[np.where(iou == ev.params.iouThrs)[0]]
    m = list(ev.params.maxDets).index(max_det)
    return _mean_defined(s[..., area, m])


def summary_stats(ev: COCOeval, protocol: AreaProtocol) -> dict[str, float]:
    """The protocol's summary metrics of an accumulated COCOeval, by name."""
    top = protocol.max_dets[-1]
    buckets = range(1, len(protocol.ranges) + 1)
    values = [_stat(ev, "AP", 0, top), _stat(ev, "AP", 0, top, 0.5), _stat(ev, "AP", 0, top, 0.75)]
    values += [_stat(ev, "AP", a, top) for a in buckets]
    values += [_stat(ev, "AR", 0, m) for m in protocol.max_dets]
    values += [_stat(ev, "AR", a, top) for a in buckets]
    return dict(zip(protocol.metric_names, values))


def summary_lines(stats: dict[str, float], protocol: AreaProtocol) -> list[str]:
    """pycocotools-style summary lines of `summary_stats` output (for the console)."""
    top = protocol.max_dets[-1]
    rows = [("AP", iou, "all", top) for iou in ("0.50:0.95", "0.50", "0.75")]
    rows += [("AP", "0.50:0.95", r.label, top) for r in protocol.ranges]
    rows += [("AR", "0.50:0.95", "all", m) for m in protocol.max_dets]
    rows += [("AR", "0.50:0.95", r.label, top) for r in protocol.ranges]
    lines = []
    for (kind, iou, area, dets), name in zip(rows, protocol.metric_names):
        title = "Average Precision  (AP)" if kind == "AP" else "Average Recall     (AR)"
        lines.append(
            f" {title} @[ IoU={iou:<9} | area={area:>8s} | maxDets={dets:>4d} ] = "
            f"{stats[name]:0.3f}   {name}"
        )
    return lines


def _per_class(precision: np.ndarray, num_classes: int, area_index: int) -> list[float]:
    return [_mean_defined(precision[:, :, k, area_index, -1]) for k in range(num_classes)]


def _run_cocoeval(coco_gt: COCO, results: list[dict], image_ids, protocol) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        if results:  # loadRes adds id, area, segmentation, iscrowd to its dicts: copies
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
        else:
            coco_dt = _empty_results(coco_gt)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.imgIds = image_ids
        ev.params.areaRng = protocol.area_rng
        ev.params.areaRngLbl = protocol.area_rng_lbl
        ev.params.maxDets = list(protocol.max_dets)
        ev.evaluate()
        ev.accumulate()
    return ev


def coco_metrics(
    coco_gt: COCO,
    results: list[dict],
    image_ids: Iterable[int] | None = None,
    verbose: bool = False,
    area_ranges: str = "coco",
) -> dict[str, Any]:
    """Runs COCOeval (bbox) over `image_ids` (default: every image of coco_gt), a pycocotools COCO
    index, with the buckets of `area_ranges` ("coco" or "tiny"); returns the metric dict. Images
    with no detection count as misses, also when there is no detection at all. verbose: print
    the summary table."""
    protocol = area_protocol(area_ranges)
    image_ids = sorted(coco_gt.getImgIds() if image_ids is None else image_ids)
    cat_ids = sorted(coco_gt.getCatIds())
    names = [str(coco_gt.cats[c].get("name", c)) for c in cat_ids]
    ev = _run_cocoeval(coco_gt, results, image_ids, protocol)
    stats = summary_stats(ev, protocol)
    if verbose:
        print("\n".join(summary_lines(stats, protocol)))
    metrics = {"area_ranges": protocol.name, "num_images": len(image_ids)}
    metrics["num_detections"] = len(results)
    metrics.update(stats)
    precision = ev.eval["precision"]  # [IoU thresholds, recall, class, area, max dets]
    metrics["per_class_AP"] = dict(zip(names, _per_class(precision, len(cat_ids), 0)))
    for a, name in enumerate(protocol.ap_names, start=1):
        metrics[f"per_class_{name}"] = dict(zip(names, _per_class(precision, len(cat_ids), a)))
    return metrics
