"""COCO evaluation (pycocotools) of a detection model, in one process or gathered across ranks.

Metric keys: AP, AP50, AP75, AP_small, AP_medium, AP_large, AR1, AR10, AR100, AR_small,
AR_medium, AR_large (pycocotools' 12 summary numbers; -1 where the ground truth has no box of
that kind), per_class_AP and per_class_AP_small ({class name: value}), num_images, num_detections.
An empty list of detections is scored like any other (0 where there are boxes to find, -1 where
there are none), through an empty result set since pycocotools cannot load an empty list.
"""

import contextlib
import io
import json
import os

import numpy as np
import torch

from . import distributed as du

STAT_NAMES = (
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
METRIC_NAMES = STAT_NAMES


def predictions_to_coco(outputs, image_ids, label_to_cat_id):
    """Model outputs (XYXY boxes, labels 1..K, scores) -> COCO result dicts (XYWH, category ids)."""
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


def _empty_results(coco_gt):
    """A result set with no detection (COCO.loadRes cannot take an empty list): COCOeval then gives
    pycocotools' own numbers, 0 where the ground truth has boxes and -1 where it has none."""
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        empty.createIndex()
    return empty


def _per_class(precision, cat_ids, area_index):
    out = []
    for k in range(len(cat_ids)):
        p = precision[:, :, k, area_index, -1]
        p = p[p > -1]
        out.append(float(np.mean(p)) if p.size else -1.0)
    return out


def coco_metrics(coco_gt, results, image_ids=None, verbose=False):
    """Runs COCOeval (bbox) over `image_ids` (default: every image of coco_gt); returns the metric dict.

    Images with no detection count as misses, also when there is no detection at all.
    """
    from pycocotools.cocoeval import COCOeval

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
    metrics.update({k: float(v) for k, v in zip(STAT_NAMES, ev.stats)})
    precision = ev.eval["precision"]  # [IoU thresholds, recall, class, area, max dets]
    metrics["per_class_AP"] = dict(zip(names, _per_class(precision, cat_ids, 0)))
    metrics["per_class_AP_small"] = dict(zip(names, _per_class(precision, cat_ids, 1)))
    return metrics


@torch.no_grad()
def predict(model, loader, device, label_to_cat_id, progress=False, amp_dtype=None):
    """Runs the model over this rank's share of `loader`; returns (COCO results, image ids seen)."""
    was_training = model.training
    model.eval()
    results, seen = [], []
    it = loader
    if progress:
        from tqdm import tqdm

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


def evaluate(
    model, loader, coco_gt, label_to_cat_id, device, progress=False, verbose=False, amp_dtype=None
):
    """Distributed-aware evaluation: every rank predicts its share, rank 0 gathers (all_gather_object)
    and scores, and the metrics are broadcast so every rank returns the same dict."""
    results, seen = predict(
        model, loader, device, label_to_cat_id, progress=progress, amp_dtype=amp_dtype
    )
    gathered = du.all_gather_object((results, seen))
    metrics = None
    if du.get_rank() == 0:
        all_results = [r for part, _ in gathered for r in part]
        all_ids = sorted({i for _, ids in gathered for i in ids})
        metrics = coco_metrics(coco_gt, all_results, all_ids, verbose=verbose)
    return du.broadcast_object(metrics)


def write_metrics_json(metrics, path):
    """Writes `metrics` (any JSON-able object) to `path` atomically (temp file + os.replace)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    os.replace(tmp, path)


def evaluate_checkpoint(
    ckpt_path,
    val_img,
    val_ann,
    use_ema=True,
    batch_size=4,
    device="auto",
    workers=0,
    max_images=None,
    output_json=None,
    progress=False,
    verbose=False,
):
    """Evaluates a training checkpoint on a COCO-style set; returns the metric dict.

    ckpt_path: a last.pt / best.pt written by the trainer (loaded with weights_only=True).
    use_ema: score the EMA weights when the checkpoint has them (else the raw weights).
    The model is rebuilt from the arguments stored in the checkpoint (mode, backbone, image size,
    number of classes); predicted labels map back to the training set's category ids.
    output_json: also write the metrics there.
    """
    from .checkpoint import load_checkpoint
    from .data import CocoDetection, build_transforms, make_loader
    from .engine import model_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    dev = du.resolve_device(device)
    model, used_ema = model_from_checkpoint(ckpt, use_ema=use_ema)
    model.to(dev)
    dataset = CocoDetection(
        val_img,
        val_ann,
        transforms=build_transforms(train=False),
        max_images=max_images,
        name="val",
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
        write_metrics_json(metrics, output_json)
    return metrics


def main(argv=None):
    """`python -m train.evaluate` / console-script entry point; prints the metrics as JSON."""
    import sys

    from .checkpoint import CheckpointError
    from .data import DatasetError
    from .options import build_eval_parser

    args = build_eval_parser().parse_args(argv)
    try:
        metrics = evaluate_checkpoint(
            args.checkpoint,
            args.val_img,
            args.val_ann,
            use_ema=not args.no_ema,
            batch_size=args.batch_size,
            device=args.device,
            workers=args.workers,
            max_images=args.max_images or None,
            output_json=args.output_json,
            progress=True,
            verbose=not args.quiet,
        )
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0
