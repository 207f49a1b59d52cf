"""Evaluate a checkpoint with pycocotools:

    python -m train.evaluate runs/train/best.pt --val-img D/images --val-ann D/val.json \
        [--no-ema] [--batch-size 4] [--device cpu] [--output-json metrics.json]

Prints pycocotools' summary and the metric dict as JSON (AP, AP50, AP75, AP_small/medium/large,
AR1/10/100, AR_small/medium/large, per-class AP); the work is lgf.evaluate_checkpoint. Exit
code 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from lgf.data import DatasetError
from lgf.evaluation import evaluate_checkpoint
from lgf.training.checkpoint import CheckpointError

from .flags import HelpFormatter, command_name, non_negative_int, positive_int, report_error


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
    p.add_argument("--batch-size", type=positive_int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=non_negative_int, default=0)
    p.add_argument(
        "--max-images", type=non_negative_int, default=0, help="first N images only (0 = all)"
    )
    p.add_argument("--output-json", default=None, help="also write the metrics to this file")
    p.add_argument("--quiet", action="store_true", help="do not print pycocotools' summary table")
    return p


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
        )
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        report_error(exc)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
