"""Draw detections and gate maps of a checkpoint: `python -m train.visualize --help`.

    python -m train.visualize --checkpoint runs/lgf/best.pt --images a.png b.png \
        --output-dir runs/vis

writes OUT/<image stem>.png (image with boxes, class names and scores; for LGF / LGFPaper models
also the local and global gate maps, averaged over channels) and OUT/<image stem>.json (the
detections drawn), with lgf.experiments.visualize. Works for any trainer checkpoint; models
without gates give one panel.
"""

from __future__ import annotations

import argparse
import sys

from lgf.data import DatasetError
from lgf.experiments.visualize import visualize_images
from lgf.training.checkpoint import CheckpointError
from lgf.training.distributed import resolve_device

from .flags import HelpFormatter, deprecated_alias, report_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.visualize",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by the trainer")
    p.add_argument(
        "--images", nargs="+", required=True, help="image files, folders or glob patterns"
    )
    p.add_argument("--output-dir", help="output folder (required)")
    deprecated_alias(p, "--out", "--output-dir")
    p.add_argument(
        "--score-thresh", type=float, default=0.3, help="draw detections with at least this score"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights even if an EMA is stored"
    )
    p.add_argument(
        "--layout",
        choices=("auto", "row", "column"),
        default="auto",
        help="panels side by side (row), stacked (column), or stacked for wide images (auto)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.output_dir:
        parser.error("the following arguments are required: --output-dir")
    try:
        if not 0.0 <= args.score_thresh <= 1.0:
            raise ValueError(f"--score-thresh must be in [0, 1], got {args.score_thresh}")
        paths = visualize_images(
            args.checkpoint,
            args.images,
            args.output_dir,
            score_thresh=args.score_thresh,
            device=resolve_device(args.device),
            use_ema=not args.no_ema,
            layout=args.layout,
        )
    except (CheckpointError, DatasetError, FileNotFoundError, ValueError) as exc:
        report_error(exc)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
