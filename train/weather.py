"""Weather-corrupted copies of a COCO-style dataset, for robustness evaluation.

    python -m train.weather --src-img D/images --src-ann D/val.json --output-dir runs/weather \
        --conditions fog,snow,frost,brightness --severities 1,2,3,4,5 --seed 0

writes OUT/<condition>-s<severity>/images/* and OUT/<condition>-s<severity>/annotations.json per
condition and severity (same file names, image sizes and boxes as the source; deterministic per
--seed; a complete copy made with the same parameters is reused unless --overwrite), with
lgf.experiments.weather_sets. Conditions: fog, rain, snow, night, frost, brightness (see
docs/experiments.md for how they relate to the robustness benchmark's corruptions). Evaluate a
checkpoint on one with
`python -m train.evaluate CKPT --val-img OUT/fog-s3/images --val-ann OUT/fog-s3/annotations.json`.

    python -m train.weather --src-img D/images --src-ann D/val.json \
        --montage docs/weather_example.png

writes a picture of one image (--montage-image, default the first by id) and its corrupted
versions instead (original + each condition at each severity, stacked).
"""

from __future__ import annotations

import argparse
import os
import sys

from lgf.data import DatasetError
from lgf.experiments.weather import CONDITIONS, SEVERITIES
from lgf.experiments.weather_montage import write_montage
from lgf.experiments.weather_sets import make_weather_sets

from .flags import HelpFormatter, add_progress_flag, deprecated_alias, flag_namer, report_error

# library setting -> flag, where the flag is not --<setting>
_FLAGS = {"image_name": "--montage-image", "crop": "--montage-crop"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.weather",
        description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument("--src-img", required=True, help="source images folder")
    p.add_argument("--src-ann", required=True, help="source COCO JSON")
    p.add_argument("--output-dir", help="output root (one sub-folder per condition)")
    deprecated_alias(p, "--out", "--output-dir")
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help="comma-separated subset of " + ",".join(CONDITIONS),
    )
    strength = p.add_mutually_exclusive_group()
    strength.add_argument(
        "--severities",
        default="3",
        help="comma-separated severities, 1 (mild) .. 5 (strong); the benchmark uses 1,2,3,4,5",
    )
    strength.add_argument(
        "--severity",
        dest="severities",
        choices=[str(s) for s in SEVERITIES],
        help="one severity (the same as --severities N)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument("--max-images", type=int, default=0, help="first N images by id only (0 = all)")
    p.add_argument("--overwrite", action="store_true", help="rewrite copies that already exist")
    p.add_argument(
        "--montage", default=None, help="write an example montage PNG here instead of the sets"
    )
    p.add_argument(
        "--montage-image",
        default=None,
        help="file_name of the montage image (default: first by id)",
    )
    p.add_argument(
        "--montage-crop",
        default=None,
        help="crop x0,y0,x1,y1 (pixels of the source image) before scaling, e.g. 300,0,940,377",
    )
    p.add_argument(
        "--montage-width", type=int, default=480, help="width of each montage panel (px)"
    )
    add_progress_flag(p)
    return p


def _montage(args: argparse.Namespace) -> None:
    path = write_montage(
        args.src_img,
        args.src_ann,
        args.montage,
        args.conditions,
        args.severities,
        args.seed,
        args.montage_image,
        args.montage_crop,
        args.montage_width,
    )
    print(f"wrote {path} ({os.path.getsize(path) / 1e3:.0f} kB)")


def _sets(args: argparse.Namespace) -> None:
    if not args.output_dir:
        raise ValueError("--output-dir is required (or give --montage)")
    if args.max_images < 0:
        raise ValueError(f"--max-images must be >= 0, got {args.max_images}")
    sets = make_weather_sets(
        args.src_img,
        args.src_ann,
        args.output_dir,
        args.conditions,
        args.severities,
        args.seed,
        max_images=args.max_images or None,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    for split, paths in sets.items():
        print(f"{split}: --val-img {paths['img_dir']} --val-ann {paths['ann_file']}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.montage:
            _montage(args)
        else:
            _sets(args)
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        report_error(exc, flag_namer(_FLAGS))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
