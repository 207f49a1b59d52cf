"""Weather-corrupted copies of a COCO-style dataset, for robustness evaluation.

    python -m train.weather --src-img D/images --src-ann D/val.json --out runs/weather \
        --conditions fog,rain,snow,night --severity 3 --seed 0

writes OUT/<condition>-s<severity>/images/* and OUT/<condition>-s<severity>/annotations.json per
condition (same file names, image sizes and boxes as the source; deterministic per --seed; a
complete copy made with the same parameters is reused unless --overwrite). Evaluate a checkpoint
on one with `python -m train.evaluate CKPT --val-img OUT/fog-s3/images --val-ann OUT/fog-s3/annotations.json`.

    python -m train.weather --src-img D/images --src-ann D/val.json --montage docs/weather_example.png

writes a picture of one image (--montage-image, default the first by id) and its corrupted
versions instead (original + each condition, stacked).
"""

import argparse
import os
import sys

import numpy as np
import torch

from lgf.data import DatasetError, decode_image, load_coco_annotations
from lgf.weather import (
    CONDITIONS,
    SEVERITIES,
    apply_weather,
    image_seed,
    make_weather_sets,
    parse_conditions,
    to_uint8_hwc,
    weather_set_dir,
)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m train.weather",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--src-img", required=True, help="source images folder")
    p.add_argument("--src-ann", required=True, help="source COCO JSON")
    p.add_argument("--out", help="output root (one sub-folder per condition)")
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help="comma-separated subset of " + ",".join(CONDITIONS),
    )
    p.add_argument(
        "--severity", type=int, choices=SEVERITIES, default=3, help="1 (mild) .. 5 (strong)"
    )
    p.add_argument("--seed", type=int, default=0)
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
    return p


def _label(array, text):
    from PIL import Image, ImageDraw

    img = Image.fromarray(array)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((4, 4), text)
    draw.rectangle([x0 - 3, y0 - 3, x1 + 3, y1 + 3], fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255))
    return np.asarray(img)


def write_montage(
    src_img,
    src_ann,
    path,
    conditions=CONDITIONS,
    severity=3,
    seed=0,
    image_name=None,
    crop=None,
    width=480,
):
    """Original + each condition of one image, stacked vertically, labelled; saved as a palette PNG
    (256 colours, to stay small). Returns the output path."""
    from PIL import Image

    coco = load_coco_annotations(src_ann, what="--src-ann annotation file")
    images = sorted(coco.dataset["images"], key=lambda im: im["id"])
    if image_name is not None:
        images = [im for im in images if im["file_name"] == image_name]
        if not images:
            raise ValueError(f"--montage-image {image_name!r} is not listed in {src_ann!r}")
    im = images[0]
    pil = decode_image(os.path.join(src_img, im["file_name"]))
    box = (0, 0, pil.width, pil.height)
    if crop:
        box = tuple(int(v) for v in crop.split(","))
        if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(
                f"--montage-crop must be x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {crop!r}"
            )
    # corrupt the whole image (as make_weather_set does), then crop
    tensor = torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy()).permute(2, 0, 1)
    panels = [("original", np.asarray(pil))]
    for cond in parse_conditions(conditions):
        gen = torch.Generator().manual_seed(image_seed(seed, cond, severity, im["id"]))
        panels.append(
            (
                f"{cond} (severity {severity})",
                to_uint8_hwc(apply_weather(tensor, cond, severity, generator=gen)),
            )
        )
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    height = max(1, round(crop_h * width / crop_w))
    rows = []
    for name, arr in panels:
        small = np.asarray(Image.fromarray(arr).crop(box).resize((width, height), Image.LANCZOS))
        rows.append(_label(small, name))
        rows.append(np.full((4, width, 3), 255, dtype=np.uint8))
    out = Image.fromarray(np.concatenate(rows[:-1], axis=0)).quantize(256, dither=Image.Dither.NONE)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    out.save(path, format="PNG", optimize=True)
    return path


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.montage:
            path = write_montage(
                args.src_img,
                args.src_ann,
                args.montage,
                args.conditions,
                args.severity,
                args.seed,
                args.montage_image,
                args.montage_crop,
                args.montage_width,
            )
            print(f"wrote {path} ({os.path.getsize(path) / 1e3:.0f} kB)")
            return 0
        if not args.out:
            raise ValueError("--out is required (or give --montage)")
        if args.max_images < 0:
            raise ValueError(f"--max-images must be >= 0, got {args.max_images}")
        sets = make_weather_sets(
            args.src_img,
            args.src_ann,
            args.out,
            args.conditions,
            args.severity,
            args.seed,
            max_images=args.max_images or None,
            overwrite=args.overwrite,
            progress=True,
        )
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    for cond, paths in sets.items():
        print(
            f"{cond}: {weather_set_dir(args.out, cond, args.severity)}  "
            f"(--val-img {paths['img_dir']} --val-ann {paths['ann_file']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
