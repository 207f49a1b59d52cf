"""Evaluate a checkpoint with pycocotools:

    python -m train.evaluate runs/train/best.pt --val-img D/images --val-ann D/val.json \
        [--area-ranges coco|tiny] [--no-ema] [--batch-size 4] [--device cpu] \
        [--output-dir runs/eval] [--detections-json detections.json]

Prints the summary table and the metric dict as JSON (coco: AP, AP50, AP75,
AP_small/medium/large, AR1/10/100, AR_small/medium/large; tiny: AP, AP50, AP75,
AP_vt/t/s/m, AR1/100/1500, AR_vt/t/s/m; per-class AP). The detections go to --detections-json,
by default next to the metrics file (metrics.json -> metrics.detections.json), in COCO results
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

from .flags import (
    HelpFormatter,
    add_progress_flag,
    command_name,
    deprecated_alias,
    non_negative_int,
    positive_int,
    report_error,
)

METRICS_FILE = "metrics.json"  # what --output-dir receives


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=command_name("evaluate"),
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
    p.add_argument("--batch-size", type=positive_int, default=4, help="images per batch")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader workers")
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
    p.add_argument(
        "--output-dir", default=None, help=f"also write the metrics to OUTPUT_DIR/{METRICS_FILE}"
    )
    deprecated_alias(p, "--output-json", "--output-dir", dest="output_json")
    p.add_argument(
        "--detections-json",
        default=None,
        help="write the detections (COCO results format) here (default: next to the metrics "
        f"file, OUTPUT_DIR/{METRICS_FILE} -> OUTPUT_DIR/metrics.detections.json; none without "
        "either flag)",
    )
    p.add_argument("--quiet", action="store_true", help="do not print pycocotools' summary table")
    add_progress_flag(p)
    return p


def _metrics_path(args: argparse.Namespace) -> str | None:
    if args.output_dir:
        return os.path.join(args.output_dir, METRICS_FILE)
    return args.output_json  # the deprecated name of a file


def detections_path(metrics_json: str | None, detections_json: str | None) -> str | None:
    """Where the detections go: --detections-json, else next to the metrics file."""
    if detections_json or not metrics_json:
        return detections_json
    stem, ext = os.path.splitext(metrics_json)
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
            output_json=_metrics_path(args),
            progress=not args.no_progress,
            verbose=not args.quiet,
            area_ranges=args.area_ranges,
            detections_json=detections_path(_metrics_path(args), args.detections_json),
        )
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        report_error(exc)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
