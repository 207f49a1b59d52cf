"""`predict`: run a detector on image files (or tensors) and get COCO result records.

    import lgf
    records = lgf.predict(model, "photos/")            # a folder, a glob, files, or tensors

Records are COCO results (image_id, category_id, bbox [x, y, w, h] in the original image's
pixels, score), made by lgf.evaluation.detections.predictions_to_coco like every other writer
of detections. Without `image_ids` the images are numbered 1..N in the order given and each
record also names its image ("file_name", the path as found).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from tqdm import tqdm

from ..data import read_image
from ..utils.setting_errors import SettingError
from .detections import predictions_to_coco
from .draw import draw_records
from .image_files import expand_image_paths, unique_stems

__all__ = ["predict", "ImageInput"]

ImageInput = str | os.PathLike | Sequence[str | os.PathLike] | Sequence[torch.Tensor]


def _sources(images: ImageInput) -> list[str | torch.Tensor]:
    """Paths (folders and globs expanded, repeats dropped) or the tensors as given."""
    if isinstance(images, torch.Tensor):
        raise SettingError(lambda n: f"{n('images')}: give a list of (3, H, W) tensors")
    if not isinstance(images, (str, os.PathLike)) and images and torch.is_tensor(images[0]):
        if not all(torch.is_tensor(t) and t.dim() == 3 and t.shape[0] == 3 for t in images):
            raise SettingError(lambda n: f"{n('images')}: every tensor must be (3, H, W)")
        return list(images)
    return expand_image_paths(images, unique=True)


def _load(source: str | torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(source):
        return source.float().div(255.0) if source.dtype == torch.uint8 else source.float()
    return read_image(source)


@contextlib.contextmanager
def _score_floor(model: nn.Module, score_thresh: float | None) -> Iterator[None]:
    """Lowers the model's own score threshold (RetinaNet's score_thresh) to `score_thresh` for the
    run, so that the threshold asked for is the one that applies."""
    old = getattr(model, "score_thresh", None)
    if score_thresh is not None and old is not None and score_thresh < old:
        model.score_thresh = float(score_thresh)
    try:
        yield
    finally:
        if old is not None:
            model.score_thresh = old


def _check(sources, image_ids, score_thresh, batch_size) -> list[int]:
    if batch_size < 1:
        raise SettingError(lambda n: f"{n('batch_size')} must be >= 1, got {batch_size}")
    if score_thresh is not None and not 0.0 <= score_thresh <= 1.0:
        raise SettingError(lambda n: f"{n('score_thresh')} must be in [0, 1], got {score_thresh}")
    if image_ids is None:
        return list(range(1, len(sources) + 1))
    if len(image_ids) != len(sources):
        raise SettingError(
            lambda n: f"{n('image_ids')}: {len(image_ids)} ids for {len(sources)} images"
        )
    return [int(i) for i in image_ids]


def _model_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        model.to(device)
        return torch.device(device)
    return next(model.parameters()).device


@torch.no_grad()
def predict(
    model: nn.Module,
    images: ImageInput,
    *,
    label_to_cat_id: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
    score_thresh: float | None = None,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    draw_dir: str | None = None,
    class_names: Mapping[int, str] | None = None,
) -> list[dict[str, Any]]:
    """COCO result records of a torchvision detection model (e.g. a trainer checkpoint's
    RetinaNet) on `images`: a file, folder or glob pattern, a list of them, or a list of (3, H, W)
    tensors (float in [0, 1] or uint8).

    label_to_cat_id[label] -> category id (default: the label itself). image_ids: one id per
    image (default: 1..N, and each record gets the image's "file_name"). score_thresh: keep
    detections with at least this score (default: the model's own threshold). device: move the
    model there (default: where it is). amp: autocast (fp16 on CUDA, bf16 on CPU).
    draw_dir: also write <image stem>.png with the kept boxes (class_names: category id -> name).
    """
    sources = _sources(images)
    ids = _check(sources, image_ids, score_thresh, batch_size)
    names = [s if isinstance(s, str) else f"image_{i}" for s, i in zip(sources, ids)]
    stems = unique_stems(names) if draw_dir else None
    dev = _model_device(model, device)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    was_training = model.training
    model.eval()
    records = []
    bar = tqdm(total=len(sources), desc="predict", disable=not progress or None, leave=False)
    with _score_floor(model, score_thresh), bar:
        for start in range(0, len(sources), batch_size):
            batch = [_load(s) for s in sources[start : start + batch_size]]
            with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp):
                outputs = model([im.to(dev) for im in batch])
            part = slice(start, start + len(batch))
            file_names = names[part] if image_ids is None and isinstance(sources[0], str) else None
            found = predictions_to_coco(
                outputs, ids[part], label_to_cat_id, file_names, score_thresh or 0.0
            )
            records.extend(found)
            if draw_dir:
                for im, img_id, stem in zip(batch, ids[part], stems[part]):
                    mine = [r for r in found if r["image_id"] == img_id]
                    draw_records(im, mine, os.path.join(draw_dir, stem + ".png"), class_names)
            bar.update(len(batch))
    model.train(was_training)
    return records
