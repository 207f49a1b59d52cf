"""`predict_checkpoint`: a trainer checkpoint's detections on image files, as a COCO results
file (the work of `python -m train.predict`)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import Any

from pycocotools.coco import COCO

from ..data import load_coco_annotations
from ..modes import model_from_checkpoint
from ..training.checkpoint import load_checkpoint
from ..training.distributed import resolve_device
from ..utils.atomic_write import write_json
from .checkpoint_eval import check_categories
from .image_files import expand_image_paths
from .prediction import predict

__all__ = ["image_ids_from_annotations", "predict_checkpoint"]


def _path_parts(path: str) -> list[str]:
    return os.path.normpath(os.path.abspath(path)).split(os.sep)


def image_ids_from_annotations(paths: Sequence[str], coco: COCO, ann_file: str) -> list[int]:
    """The id of each image file in a COCO index: the image whose file_name (a relative path)
    is the end of the file's path. A file that matches no image, or several, is an error."""
    by_name: dict[str, list[tuple[list[str], int]]] = {}
    for im in coco.dataset["images"]:
        name = posixpath.normpath(str(im["file_name"]).replace("\\", "/"))
        by_name.setdefault(posixpath.basename(name), []).append((name.split("/"), im["id"]))
    ids, missing = [], []
    for path in paths:
        parts = _path_parts(path)
        found = [i for comps, i in by_name.get(parts[-1], []) if parts[-len(comps) :] == comps]
        if len(found) > 1:
            raise ValueError(
                f"{path!r} matches {len(found)} images of {ann_file!r} (ids {found}); "
                "give the files so that their paths end with one file_name"
            )
        if found:
            ids.append(found[0])
        else:
            missing.append(path)
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(paths)} images are not listed in {ann_file!r} "
            f"(matched by file_name), e.g. {missing[0]!r}"
        )
    return ids


def _class_names(ckpt: dict[str, Any], label_to_cat_id: Sequence[int] | None) -> dict[int, str]:
    names = list(ckpt.get("class_names") or [])
    if label_to_cat_id is None:
        return {i + 1: n for i, n in enumerate(names)}
    return {int(c): n for c, n in zip(label_to_cat_id[1:], names)}


def predict_checkpoint(
    ckpt_path: str,
    images: str | Sequence[str],
    out_json: str,
    ann_file: str | None = None,
    draw_dir: str | None = None,
    score_thresh: float | None = None,
    batch_size: int = 1,
    device: str = "auto",
    amp: bool = False,
    use_ema: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Writes the detections of a trainer checkpoint (EMA weights when stored, unless `use_ema`
    is False) on `images` (files, folders, globs) to `out_json` as COCO results with the training
    set's category ids. ann_file: take the image ids from this COCO file by file name, so the
    file can be scored against it; else the images are numbered 1..N and each record names its
    file. Returns a summary: the output path, counts, and where the ids came from."""
    paths = expand_image_paths(images, unique=True)
    ckpt = load_checkpoint(ckpt_path)
    coco = load_coco_annotations(ann_file) if ann_file else None
    label_to_cat_id = ckpt.get("label_to_cat_id")
    if coco is not None:
        label_to_cat_id = label_to_cat_id or [0] + sorted(coco.getCatIds())
        check_categories(label_to_cat_id, coco, ann_file, ckpt_path)
    image_ids = image_ids_from_annotations(paths, coco, ann_file) if coco is not None else None
    model, used_ema = model_from_checkpoint(ckpt, use_ema=use_ema)
    records = predict(
        model,
        paths,
        label_to_cat_id=label_to_cat_id,
        image_ids=image_ids,
        score_thresh=score_thresh,
        batch_size=batch_size,
        device=resolve_device(device),
        amp=amp,
        progress=progress,
        draw_dir=draw_dir,
        class_names=_class_names(ckpt, label_to_cat_id),
    )
    write_json(records, out_json, indent=None)
    return {
        "detections_file": os.path.abspath(out_json),
        "num_images": len(paths),
        "num_detections": len(records),
        "image_ids": f"from {ann_file}" if coco is not None else "1..N in the order given",
        "weights": "ema" if used_ema else "model",
        "drawings": os.path.abspath(draw_dir) if draw_dir else None,
    }
