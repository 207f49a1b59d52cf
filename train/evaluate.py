"""Evaluate a checkpoint with pycocotools: `python -m train.evaluate CKPT --val-img D --val-ann J`.

Prints the COCO summary and the metric dict as JSON (also written to --output-json).
"""
import json
import sys

from lgf.checkpoint import CheckpointError
from lgf.data import DatasetError
from lgf.evaluation import evaluate_checkpoint
from lgf.options import build_eval_parser


def main(argv=None):
    args = build_eval_parser().parse_args(argv)
    try:
        metrics = evaluate_checkpoint(
            args.checkpoint, args.val_img, args.val_ann, use_ema=not args.no_ema,
            batch_size=args.batch_size, device=args.device, workers=args.workers,
            max_images=args.max_images or None, output_json=args.output_json,
            progress=True, verbose=not args.quiet)
    except (DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
