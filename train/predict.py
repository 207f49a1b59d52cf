"""Run a trained checkpoint on images and write COCO results: `python -m train.predict --help`.

    python -m train.predict --checkpoint runs/lgf/best.pt --images photos/ "more/*.jpg" a.png \\
        --out detections.json [--ann val.json] [--draw runs/drawn] [--score-thresh 0.3] \\
        [--batch-size 4] [--device cuda] [--amp]

--images takes files, folders (their image files, sorted) and glob patterns. The output is a
JSON list of COCO results (image_id, category_id with the training set's category ids, bbox
[x, y, w, h] in the original image's pixels, score). With --ann the image ids are that file's,
matched by file name, so the output can be scored against it (pycocotools' COCO.loadRes); without
it the images are numbered 1..N in the order found and each record also has "file_name".
--draw writes each image with its boxes (torchvision's draw_bounding_boxes) as DIR/<stem>.png.
The work is lgf.evaluation.predict_checkpoint. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from lgf.data import DatasetError
from lgf.evaluation.predict_checkpoint import predict_checkpoint
from lgf.training.checkpoint import CheckpointError

from .flags import HelpFormatter, flag_namer, positive_int, report_error

# library setting -> flag, where the flag is not --<setting>
_FLAGS = {"ann_file": "--ann", "draw_dir": "--draw", "out_json": "--out"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.predict",
        description="Detections of a trainer checkpoint on image files, as COCO results JSON.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="last.pt / best.pt written by the trainer")
    p.add_argument(
        "--images", nargs="+", required=True, help="image files, folders or glob patterns"
    )
    p.add_argument("--out", required=True, help="output JSON (COCO results format)")
    p.add_argument("--ann", help="COCO JSON whose image ids the output uses (by file name)")
    p.add_argument("--draw", help="also write each image with its boxes to this folder")
    p.add_argument(
        "--score-thresh",
        type=float,
        default=None,
        help="keep detections with at least this score (default: the checkpoint's own, "
        "the trainer's --score-thresh)",
    )
    p.add_argument("--batch-size", type=positive_int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights even if an EMA is stored"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m train.predict`: prints a summary of what it wrote as JSON."""
    args = build_parser().parse_args(argv)
    try:
        summary = predict_checkpoint(
            args.checkpoint,
            args.images,
            args.out,
            ann_file=args.ann,
            draw_dir=args.draw,
            score_thresh=args.score_thresh,
            batch_size=args.batch_size,
            device=args.device,
            amp=args.amp,
            use_ema=not args.no_ema,
            progress=not args.no_progress,
        )
    except (CheckpointError, DatasetError, FileNotFoundError, ValueError) as exc:
        report_error(exc, flag_namer(_FLAGS))
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
