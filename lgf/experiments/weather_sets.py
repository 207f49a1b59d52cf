"""Weather-corrupted COCO-style copies of a dataset, for robustness evaluation.

One copy per (condition, severity) under an output root:

    OUT/<condition>-s<severity>/images/<file_name>     same relative names and sizes
    OUT/<condition>-s<severity>/annotations.json       the source's images, boxes, categories
    OUT/<condition>-s<severity>/weather.json           the parameters, written last

Each image's generator is seeded from (seed, condition, severity, image id)
(lgf.experiments.weather.image_seed), so a copy is deterministic per seed and independent of the
image order. A complete copy made with the same parameters is reused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor
from tqdm import tqdm

from ..data import decode_image, load_coco_annotations
from ..utils.atomic_write import atomic_write, write_json
from ..utils.setting_errors import MissingPathError
from .weather import (
    CONDITIONS,
    apply_weather,
    check_condition,
    check_severity,
    image_seed,
    parse_conditions,
    parse_severities,
    to_uint8_hwc,
)

__all__ = [
    "FORMAT_VERSION",
    "weather_split_name",
    "weather_set_dir",
    "weather_set_paths",
    "make_weather_set",
    "make_weather_sets",
]

FORMAT_VERSION = 1


def weather_split_name(condition: str, severity: int) -> str:
    """Name of one condition's copy (its folder, and its split in the grid's tables)."""
    return f"{condition}-s{int(severity)}"


def weather_set_dir(out_root: str, condition: str, severity: int) -> str:
    """Folder of one condition's copy: OUT/<condition>-s<severity>."""
    return os.path.join(out_root, weather_split_name(condition, severity))


def weather_set_paths(out_root: str, condition: str, severity: int) -> dict[str, str]:
    """{"img_dir", "ann_file"} of one condition's copy (as a dataset's images and COCO JSON)."""
    out_dir = weather_set_dir(out_root, condition, severity)
    return {
        "img_dir": os.path.join(out_dir, "images"),
        "ann_file": os.path.join(out_dir, "annotations.json"),
    }


def _source_images(src_img: str, src_ann: str, max_images: int | None):
    """(COCO dict of the source, its first `max_images` images by id), checked to exist."""
    if not src_img or not os.path.isdir(src_img):
        raise MissingPathError(lambda n: f"{n('src_img')}: image directory not found: {src_img!r}")
    data = load_coco_annotations(src_ann, what="source annotation file").dataset
    images = sorted(data["images"], key=lambda im: im["id"])
    if max_images:
        images = images[: int(max_images)]
    missing = [
        im["file_name"]
        for im in images
        if not os.path.isfile(os.path.join(src_img, im["file_name"]))
    ]
    if missing:
        raise MissingPathError(
            lambda n: (
                f"{n('src_img')} {src_img!r} lacks {len(missing)} images listed in "
                f"{src_ann!r}, e.g. {missing[0]!r}"
            )
        )
    return data, images


def _is_complete(meta_file: str, meta: dict[str, Any], ann_file: str) -> bool:
    if not os.path.isfile(meta_file):
        return False
    try:
        with open(meta_file, "r", encoding="utf-8") as f:
            return json.load(f) == meta and os.path.isfile(ann_file)
    except (OSError, json.JSONDecodeError):
        return False


def _save_image(array, path: str) -> None:
    ext = os.path.splitext(path)[1].lower()
    img = Image.fromarray(array, "RGB")
    with atomic_write(path, "wb") as f:
        if ext in (".jpg", ".jpeg"):
            img.save(f, format="JPEG", quality=95)
        else:
            img.save(f, format=Image.registered_extensions().get(ext, "PNG"))


def _write_images(src_img, images, img_dir, condition, severity, seed, progress) -> None:
    it = images
    if progress:
        desc = weather_split_name(condition, severity)
        it = tqdm(images, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    for im in it:
        image = pil_to_tensor(decode_image(os.path.join(src_img, im["file_name"])))
        gen = torch.Generator().manual_seed(image_seed(seed, condition, severity, im["id"]))
        out = apply_weather(image, condition, severity, generator=gen)
        _save_image(to_uint8_hwc(out), os.path.join(img_dir, im["file_name"]))


def _annotations_copy(data: dict, images: list[dict], meta: dict[str, Any]) -> dict:
    """The source COCO dict restricted to `images`, its info recording the corruption."""
    keep = {im["id"] for im in images}
    copy = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    copy["info"] = {
        **(copy.get("info") or {}),
        "weather": {k: v for k, v in meta.items() if k != "src_img"},
    }
    copy["images"] = images
    copy["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    return copy


def make_weather_set(
    src_img: str,
    src_ann: str,
    out_root: str,
    condition: str,
    severity: int = 3,
    seed: int = 0,
    max_images: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, str]:
    """Writes one weather-corrupted copy of a dataset; returns its {"img_dir", "ann_file"}.

    `max_images` keeps the first N images by id and their annotations. A copy that is complete
    and was made with the same parameters is reused unless `overwrite`.
    """
    check_condition(condition)
    check_severity(severity)
    data, images = _source_images(src_img, src_ann, max_images)
    paths = weather_set_paths(out_root, condition, severity)
    meta_file = os.path.join(weather_set_dir(out_root, condition, severity), "weather.json")
    meta = {
        "format_version": FORMAT_VERSION,
        "condition": condition,
        "severity": int(severity),
        "seed": int(seed),
        "src_img": os.path.abspath(src_img),
        "src_ann": os.path.abspath(src_ann),
        "num_images": len(images),
    }
    if not overwrite and _is_complete(meta_file, meta, paths["ann_file"]):
        return paths
    if os.path.isfile(meta_file):
        os.remove(meta_file)
    _write_images(src_img, images, paths["img_dir"], condition, severity, seed, progress)
    write_json(_annotations_copy(data, images, meta), paths["ann_file"], indent=None)
    write_json(meta, meta_file, indent=None)
    return paths


def make_weather_sets(
    src_img: str,
    src_ann: str,
    out_root: str,
    conditions: str | Sequence[str] = CONDITIONS,
    severities: str | int | Sequence[int] = 3,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, dict[str, str]]:
    """`make_weather_set` for each condition at each severity; returns {split name
    (`weather_split_name`, e.g. "fog-s3"): {"img_dir", "ann_file"}}, conditions outer."""
    return {
        weather_split_name(c, sev): make_weather_set(
            src_img, src_ann, out_root, c, sev, seed, **kwargs
        )
        for c in parse_conditions(conditions)
        for sev in parse_severities(severities)
    }
