"""Evaluate a checkpoint with pycocotools:

    python -m train.evaluate runs/train/best.pt --val-img D/images --val-ann D/val.json \
        [--area-ranges coco|tiny] [--no-ema] [--batch-size 4] [--device cpu] \
        [--output-json metrics.json] [--detections-json detections.json]

Prints the summary table and the metric dict as JSON (coco: AP, AP50, AP75,
AP_small/medium/large, AR1/10/100, AR_small/medium/large; tiny: AP, AP50, AP75,
AP_vt/t/s/m, AR1/100/1500, AR_vt/t/s/m; per-class AP). The detections go to --detections-json,
by default next to --output-json (metrics.json -> metrics.detections.json), in COCO results
format. The work is lgf.evaluate_checkpoint. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lgf.data import DatasetError
from lgf.evaluation import AREA_RANGES, evaluate_checkpoint
from lgf.training.checkpoint import CheckpointError

from .flags import HelpFormatter, non_negative_int, positive_int, report_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a training checkpoint (last.pt / best.pt) on a COCO-style set "
        "with pycocotools.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("checkpoint", help="path to a checkpoint written by the trainer")
    p.add_argument("--val-img", required=True, help="images folder")
    p.add_argument("--val-ann", required=True, help="COCO JSON")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights even if an EMA is stored"
    )
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=non_negative_int, default=0)
    p.add_argument(
        "--max-images", type=non_negative_int, default=0, help="first N images only (0 = all)"
    )
    p.add_argument(
        "--area-ranges",
        choices=tuple(AREA_RANGES),
        default="coco",
        help="size buckets: coco (small/medium/large) or tiny (AI-TOD's very tiny/tiny/small/"
        "medium)",
    )
    p.add_argument("--output-json", default=None, help="also write the metrics to this file")
    p.add_argument(
        "--detections-json",
        default=None,
        help="write the detections (COCO results format) here (default: next to --output-json, "
        "X.json -> X.detections.json; none without either flag)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print pycocotools' summary table")
    return p


def detections_path(output_json: str | None, detections_json: str | None) -> str | None:
    """Where the detections go: --detections-json, else next to --output-json."""
    if detections_json or not output_json:
        return detections_json
    stem, ext = os.path.splitext(output_json)
    return f"{stem}.detections{ext or '.json'}"


def main(argv: list[str] | None = None) -> int:
    """`python -m train.evaluate` / the `lgf-eval` console script; prints the metrics as JSON."""
    args = build_parser().parse_args(argv)
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
            area_ranges=args.area_ranges,
            detections_json=detections_path(args.output_json, args.detections_json),
        )
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        report_error(exc)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
