"""A picture of one image and its weather-corrupted versions, stacked (docs/weather_example.png)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.transforms.v2.functional import pil_to_tensor

from ..data import decode_image, load_coco_annotations
from ..utils.atomic_write import atomic_write
from ..utils.setting_errors import SettingError
from .weather import (
    CONDITIONS,
    apply_weather,
    image_seed,
    parse_conditions,
    parse_severities,
    to_uint8_hwc,
)

__all__ = ["write_montage"]


def _label(array: np.ndarray, text: str) -> np.ndarray:
    img = Image.fromarray(array)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((4, 4), text)
    draw.rectangle([x0 - 3, y0 - 3, x1 + 3, y1 + 3], fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255))
    return np.asarray(img)


def _pick_image(src_ann: str, image_name: str | None) -> dict:
    coco = load_coco_annotations(src_ann, what="source annotation file")
    images = sorted(coco.dataset["images"], key=lambda im: im["id"])
    if image_name is not None:
        images = [im for im in images if im["file_name"] == image_name]
        if not images:
            raise SettingError(
                lambda n: f"{n('image_name')} {image_name!r} is not listed in {src_ann!r}"
            )
    return images[0]


def _crop_box(crop: str | None, width: int, height: int) -> tuple[int, int, int, int]:
    if not crop:
        return (0, 0, width, height)
    try:
        box = tuple(int(v) for v in crop.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        raise SettingError(
            lambda n: f"{n('crop')} must be x0,y0,x1,y1 with x1 > x0 and y1 > y0, got {crop!r}"
        )
    return box


def _panels(pil, image_id: int, conditions, severities, seed: int) -> list[tuple[str, np.ndarray]]:
    """The original and each condition at each severity of the whole image (as make_weather_set
    corrupts it)."""
    image = pil_to_tensor(pil)
    panels = [("original", np.asarray(pil))]
    for cond in parse_conditions(conditions):
        for sev in parse_severities(severities):
            gen = torch.Generator().manual_seed(image_seed(seed, cond, sev, image_id))
            out = apply_weather(image, cond, sev, generator=gen)
            panels.append((f"{cond} (severity {sev})", to_uint8_hwc(out)))
    return panels


def write_montage(
    src_img: str,
    src_ann: str,
    path: str,
    conditions: str | Sequence[str] = CONDITIONS,
    severities: str | int | Sequence[int] = 3,
    seed: int = 0,
    image_name: str | None = None,
    crop: str | None = None,
    width: int = 480,
) -> str:
    """Original + each condition at each severity of one image (`image_name`, default the first
    by id), cropped
    to `crop` ("x0,y0,x1,y1" in source pixels), scaled to `width`, labelled and stacked; saved as
    a palette PNG (256 colours, to stay small). Returns the output path."""
    im = _pick_image(src_ann, image_name)
    pil = decode_image(os.path.join(src_img, im["file_name"]))
    box = _crop_box(crop, pil.width, pil.height)
    height = max(1, round((box[3] - box[1]) * width / (box[2] - box[0])))
    rows = []
    for name, arr in _panels(pil, im["id"], conditions, severities, seed):
        small = np.asarray(Image.fromarray(arr).crop(box).resize((width, height), Image.LANCZOS))
        rows.append(_label(small, name))
        rows.append(np.full((4, width, 3), 255, dtype=np.uint8))
    out = Image.fromarray(np.concatenate(rows[:-1], axis=0)).quantize(256, dither=Image.Dither.NONE)
    with atomic_write(path, "wb") as f:
        out.save(f, format="PNG", optimize=True)
    return path
