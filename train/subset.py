"""A class subset of a COCO JSON file: `python -m train.subset --help`.

    python -m train.subset --ann coco/instances_train2017.json \\
        --classes person,bicycle,car,motorcycle,bus,truck --out coco6/train.json [--keep-empty]

keeps the named categories with their ids unchanged, their annotations, and the images that
still have one (all images with --keep-empty); unknown class names are an error that names
them. The work is lgf.experiments.class_subset. Exit code 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys

from lgf.data import DatasetError
from lgf.experiments.class_subset import write_class_subset

from .flags import report_error


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.subset",
        description="Keep some classes of a COCO JSON file (category ids unchanged).",
    )
    p.add_argument("--ann", required=True, help="source COCO JSON")
    p.add_argument("--classes", required=True, help="comma-separated category names")
    p.add_argument("--out", required=True, help="output COCO JSON")
    p.add_argument(
        "--keep-empty",
        action="store_true",
        help="keep the images left without annotations (default: drop them)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        summary = write_class_subset(args.ann, args.classes, args.out, args.keep_empty)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        report_error(exc)
        return 2
    kept_img, all_img = summary["images"]
    kept_ann, all_ann = summary["annotations"]
    cats = ", ".join(f"{name} ({cid})" for cid, name in summary["categories"].items())
    print(
        f"wrote {summary['out']}: categories {cats}; {kept_ann} of {all_ann} annotations, "
        f"{kept_img} of {all_img} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
