"""COCO's folder layout, as torchvision's detection reference reads it (`--data-path`):

    DATA/train2017/                          training images
    DATA/val2017/                            validation images
    DATA/annotations/instances_train2017.json
    DATA/annotations/instances_val2017.json

The validation split may be absent as a whole (a run without validation); half of it is an error.
"""

from __future__ import annotations

import os

from ..utils.setting_errors import MissingPathError

__all__ = ["COCO_LAYOUT", "coco_layout_paths"]

# data setting -> path inside the data folder
COCO_LAYOUT = {
    "train_img": "train2017",
    "train_ann": os.path.join("annotations", "instances_train2017.json"),
    "val_img": "val2017",
    "val_ann": os.path.join("annotations", "instances_val2017.json"),
}


def _exists(path: str, key: str) -> bool:
    return os.path.isdir(path) if key.endswith("_img") else os.path.isfile(path)


def coco_layout_paths(data_path: str) -> dict[str, str | None]:
    """The four data paths of a COCO-layout folder (val_img / val_ann None when the folder has no
    validation split). Errors name the setting `data_path` and the missing entries."""
    if not data_path or not os.path.isdir(data_path):
        raise MissingPathError(lambda n: f"{n('data_path')}: folder not found: {data_path!r}")
    paths = {k: os.path.join(data_path, rel) for k, rel in COCO_LAYOUT.items()}
    missing = {k: COCO_LAYOUT[k] for k, p in paths.items() if not _exists(p, k)}
    val_missing = [k for k in ("val_img", "val_ann") if k in missing]
    if len(missing) > len(val_missing) or len(val_missing) == 1:
        wanted = ", ".join(COCO_LAYOUT.values())
        raise MissingPathError(
            lambda n: (
                f"{n('data_path')} {data_path!r} is not in COCO's layout: missing "
                f"{', '.join(missing.values())} (expected {wanted})"
            )
        )
    if val_missing:
        paths["val_img"] = paths["val_ann"] = None
    return paths
