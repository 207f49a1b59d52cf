"""Params, FLOPs, latency and images/s of every mode: `python -m train.complexity --help`.

    python -m train.complexity                                # resnet50, 640x640, CPU
    python -m train.complexity --img-size 512 --device cuda --output-dir runs/complexity
    python -m train.complexity --modes baseline,lgf --backbone resnet18 --repeats 20

Prints a Markdown table (one row per trainer mode, plus "lgf (reference)": the LGF model with the
plain-PyTorch backend of the op); see lgf.experiments.complexity for what is measured.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from lgf.experiments.complexity import complexity_modes, complexity_report, format_markdown
from lgf.models import BACKBONES
from lgf.training.distributed import resolve_device
from lgf.utils.atomic_write import write_json

from .flags import HelpFormatter, deprecated_alias, report_error

REPORT_FILE = "complexity.json"  # what --output-dir receives


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.complexity",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "--modes", default=",".join(complexity_modes()), help="comma-separated trainer modes"
    )
    p.add_argument("--backbone", choices=tuple(BACKBONES), default="resnet50", help="ResNet depth")
    p.add_argument("--img-size", type=int, default=640, help="square input side (px)")
    p.add_argument(
        "--num-classes",
        type=int,
        default=4,
        help="classes incl. background (4 = aerial-cars-kit's 3 categories + 1)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per model")
    p.add_argument(
        "--repeats", type=int, default=10, help="timed calls per model (median reported)"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's default)"
    )
    p.add_argument(
        "--no-reference", action="store_true", help="leave out the 'lgf (reference)' row"
    )
    p.add_argument(
        "--output-dir",
        default=None,
        help=f"also write the report (rows + settings) to OUTPUT_DIR/{REPORT_FILE}",
    )
    deprecated_alias(p, "--json", "--output-dir", dest="json")
    return p


def _check(args: argparse.Namespace) -> None:
    if args.img_size < 32:
        raise ValueError(f"--img-size must be >= 32, got {args.img_size}")
    if args.num_classes < 2:
        raise ValueError(f"--num-classes must be >= 2, got {args.num_classes}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check(args)
        if args.threads:
            torch.set_num_threads(args.threads)
        report = complexity_report(
            [m.strip() for m in args.modes.split(",") if m.strip()],
            args.backbone,
            args.img_size,
            args.num_classes,
            resolve_device(args.device),
            warmup=args.warmup,
            repeats=args.repeats,
            lgf_reference=not args.no_reference,
            progress=lambda msg: print(f"[complexity] {msg}", file=sys.stderr, flush=True),
        )
    except ValueError as exc:
        report_error(exc)
        return 2
    print(format_markdown(report))
    if args.output_dir or args.json:
        write_json(
            report, os.path.join(args.output_dir, REPORT_FILE) if args.output_dir else args.json
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
