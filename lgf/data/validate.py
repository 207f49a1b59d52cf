"""Checks of a COCO detection dict and of image sizes; every message names the file and the id.

Refused (DatasetError): a file without images or categories; image, annotation or category ids
that are not integers or appear twice; boxes that are not four finite numbers (NaN, Infinity,
`true` and strings included); annotations of unknown images or categories; sets whose every box
would be dropped. Warned once per file, with counts: boxes dropped from the targets because they
have no area or lie outside their image (`box_xyxy` decides, for the checks and the dataset
alike). `check_image_size` refuses images that the model's resize would shrink to nothing.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .decode import DatasetError

__all__ = ["box_xyxy", "check_coco_dict", "check_image_size"]


def box_xyxy(bbox: Sequence[float], width: float | None, height: float | None) -> tuple | None:
    """A COCO [x, y, w, h] box -> (x1, y1, x2, y2) clipped to the image (when its size is known),
    or None when nothing is left: no area, or no overlap with the image."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1, x2, y2 = x, y, x + w, y + h
    if width is not None:
        x1, x2 = max(0.0, x1), min(float(width), x2)
    if height is not None:
        y1, y2 = max(0.0, y1), min(float(height), y2)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fail(where: str, msg: str) -> DatasetError:
    return DatasetError(f"{where}: {msg}")


def _check_ids(entries: list, kind: str, where: str, required: bool) -> None:
    """Integer ids, each once. `kind`: "image", "annotation" or "category"."""
    seen = Counter()
    for e in entries:
        if "id" not in e and not required:
            continue
        i = e.get("id")
        if not _is_int(i):
            shown = f"{i!r} (a {type(i).__name__})" if i is not None else "none"
            raise _fail(where, f"{kind} ids must be integers, got {shown} in {e!r}"[:400])
        seen[i] += 1
    dups = sorted(i for i, n in seen.items() if n > 1)
    if dups:
        raise _fail(
            where,
            f"{len(dups)} {kind} id(s) appear more than once, e.g. {kind} id {dups[0]} "
            f"({seen[dups[0]]} times); every {kind} needs its own id",
        )


def _check_top_level(data: Any, where: str) -> None:
    if not isinstance(data, dict):
        raise _fail(where, f"top level must be a JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise _fail(where, f"missing the '{key}' list")
        if not isinstance(data[key], list):
            raise _fail(where, f"'{key}' must be a list")
        if any(not isinstance(e, dict) for e in data[key]):
            bad = next(e for e in data[key] if not isinstance(e, dict))
            raise _fail(where, f"'{key}' entries must be objects, got {bad!r}")
    if not data["categories"]:
        raise _fail(where, "'categories' is empty")
    if not data["images"]:
        raise _fail(where, "'images' is empty: the file lists no image")


def _check_images(images: list, where: str) -> None:
    _check_ids(images, "image", where, required=True)
    for im in images:
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise _fail(where, f"image {im['id']} needs a 'file_name' string, got {im!r}")
        for key in ("width", "height"):
            if key in im and not (_is_real(im[key]) and im[key] > 0):
                raise _fail(
                    where,
                    f"image {im['id']} ({im['file_name']}): '{key}' must be a positive "
                    f"number, got {im[key]!r}",
                )


def _check_annotation(a: dict, image_ids: set, cat_ids: set, where: str) -> None:
    aid = a.get("id", "without id")
    box = a.get("bbox")
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(map(_is_real, box))):
        raise _fail(
            where,
            f"annotation {aid} (image {a.get('image_id')!r}) needs 'bbox' = [x, y, w, h] of "
            f"four finite numbers, got {box!r}",
        )
    if a.get("image_id") not in image_ids or not _is_int(a.get("image_id")):
        raise _fail(where, f"annotation {aid} refers to unknown image_id {a.get('image_id')!r}")
    if a.get("category_id") not in cat_ids or not _is_int(a.get("category_id")):
        raise _fail(where, f"annotation {aid} has unknown category_id {a.get('category_id')!r}")
    if "area" in a and not _is_real(a["area"]):
        raise _fail(where, f"annotation {aid}: 'area' must be a finite number, got {a['area']!r}")
    if a.get("iscrowd", 0) not in (0, 1):
        raise _fail(where, f"annotation {aid}: 'iscrowd' must be 0 or 1, got {a['iscrowd']!r}")


def _count_dropped_boxes(data: dict, where: str) -> None:
    """Warns once with counts when boxes cannot be targets; refuses a set that keeps none."""
    sizes = {im["id"]: (im.get("width"), im.get("height")) for im in data["images"]}
    empty, outside, kept = [], [], 0
    for a in data["annotations"]:
        if a.get("iscrowd", 0):
            continue
        w, h = sizes[a["image_id"]]
        if box_xyxy(a["bbox"], None, None) is None:
            empty.append(a["id"])
        elif box_xyxy(a["bbox"], w, h) is None:
            outside.append(a["id"])
        else:
            kept += 1
    dropped = len(empty) + len(outside)
    if not dropped:
        return
    parts = []
    if empty:
        parts.append(f"{len(empty)} of zero or negative size (e.g. annotation {empty[0]})")
    if outside:
        parts.append(f"{len(outside)} outside their image (e.g. annotation {outside[0]})")
    detail = f"{dropped} of {dropped + kept} boxes: " + ", ".join(parts)
    if not kept:
        raise _fail(where, f"every box would be dropped ({detail}); nothing is left to learn")
    warnings.warn(
        f"{where}: {detail} are left out of the targets (evaluation still counts them)",
        stacklevel=4,
    )


def check_coco_dict(data: Any, ann_file: str, what: str = "annotation file") -> None:
    """Checks a parsed COCO detection file (see the module docstring); fills in the optional
    fields pycocotools reads ('area', 'iscrowd', missing annotation ids)."""
    where = f"{what} {ann_file!r}"
    _check_top_level(data, where)
    _check_ids(data["categories"], "category", where, required=True)
    _check_images(data["images"], where)
    _check_ids(data["annotations"], "annotation", where, required=False)
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    for a in data["annotations"]:
        _check_annotation(a, image_ids, cat_ids, where)
        if "area" not in a:  # pycocotools' evaluation reads it
            a["area"] = float(a["bbox"][2]) * float(a["bbox"][3])
        a.setdefault("iscrowd", 0)
    missing = [a for a in data["annotations"] if "id" not in a]
    next_id = max([a["id"] for a in data["annotations"] if "id" in a] + [0]) + 1
    for i, a in enumerate(missing):
        a["id"] = next_id + i
    _count_dropped_boxes(data, where)


def check_image_size(width: int, height: int, img_size: int | None, where: str) -> None:
    """Refuses an image whose shorter side the model's resize (longer side -> img_size) would
    shrink below one pixel."""
    if min(width, height) <= 0:
        raise DatasetError(f"{where}: the image is {width}x{height} px: it has no pixels")
    if img_size is None:
        return
    scale = img_size / max(width, height)
    if math.floor(min(width, height) * scale) < 1:
        need = math.ceil(max(width, height) / img_size)
        raise DatasetError(
            f"{where}: the image is {width}x{height} px; resized so its longer side is img_size "
            f"= {img_size}, its shorter side would be {min(width, height) * scale:.2f} px (less "
            f"than one pixel). Crop or tile it (the shorter side needs >= {need} px at this "
            "size), or use a larger img_size"
        )
