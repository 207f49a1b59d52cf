"""A class subset of a COCO JSON file (the LGF paper trained on 6 COCO classes).

Kept: the named categories with their own ids (a model trained on the subset predicts the
original category ids, so its detections score against the full file's ids), their annotations,
and the images that still have an annotation (all images with `keep_empty`). Every other key of
the file is copied; `info.class_subset` records the source and the classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from ..data import load_coco_annotations
from ..utils.atomic_write import write_json
from ..utils.setting_errors import SettingError

__all__ = ["parse_class_names", "class_subset", "write_class_subset"]


def parse_class_names(text: str | Sequence[str]) -> list[str]:
    """'car,bus' (or a list) -> names, stripped, order kept, no duplicates; errors name the
    setting `classes`."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = list(dict.fromkeys(n.strip() for n in items if n.strip()))
    if not names:
        raise SettingError(lambda n: f"{n('classes')}: no class name given")
    return names


def _category_ids(categories: list[dict], names: Sequence[str], source: str) -> list[int]:
    by_name: dict[str, list[int]] = {}
    for c in categories:
        by_name.setdefault(str(c.get("name")), []).append(c["id"])
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = sorted(by_name)
        raise SettingError(
            lambda n: (
                f"{n('classes')}: {source!r} has no category named {unknown}; "
                f"its categories: {known}"
            )
        )
    repeated = {n: by_name[n] for n in names if len(by_name[n]) > 1}
    if repeated:
        raise SettingError(
            lambda n: f"{n('classes')}: {source!r} has several categories named {repeated}"
        )
    return [by_name[n][0] for n in names]


def class_subset(
    data: dict[str, Any], names: Sequence[str], keep_empty: bool = False, source: str = "input"
) -> dict[str, Any]:
    """The COCO dict `data` restricted to the categories called `names` (ids unchanged), their
    annotations and (unless `keep_empty`) the images that keep at least one annotation."""
    keep_cats = set(_category_ids(data["categories"], names, source))
    anns = [a for a in data["annotations"] if a["category_id"] in keep_cats]
    with_boxes = {a["image_id"] for a in anns}
    out = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    info = out.get("info") if isinstance(out.get("info"), dict) else {}
    out["info"] = {**info, "class_subset": {"source": source, "classes": list(names)}}
    out["images"] = [im for im in data["images"] if keep_empty or im["id"] in with_boxes]
    out["annotations"] = anns
    out["categories"] = [c for c in data["categories"] if c["id"] in keep_cats]
    return out


def write_class_subset(
    ann_file: str, classes: str | Sequence[str], out_file: str, keep_empty: bool = False
) -> dict[str, Any]:
    """Writes the class subset of `ann_file` to `out_file`; returns counts before and after."""
    names = parse_class_names(classes)
    if os.path.abspath(out_file) == os.path.abspath(ann_file):
        raise SettingError(lambda n: f"{n('out')} must differ from {n('ann')} ({ann_file!r})")
    load_coco_annotations(ann_file, what="annotation file")  # checks the file, names it
    with open(ann_file, "r", encoding="utf-8") as f:
        data = json.load(f)  # written back as it is, without the fields the check fills in
    subset = class_subset(data, names, keep_empty, source=os.path.basename(ann_file))
    write_json(subset, out_file, indent=None)
    return {
        "out": os.path.abspath(out_file),
        "categories": {c["id"]: c["name"] for c in subset["categories"]},
        "images": [len(subset["images"]), len(data["images"])],
        "annotations": [len(subset["annotations"]), len(data["annotations"])],
    }
