"""COCO-style detection dataset: pycocotools index, PIL decoding, torchvision transforms v2.

Category ids of the annotation file are mapped to contiguous labels 1..K (sorted by id), the
torchvision convention where label 0 is never a class; `label_to_cat_id` maps them back for
evaluation. Training targets leave out crowd boxes and boxes of zero or negative size (after
clipping to the image); images without boxes are kept as negatives.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F


class DatasetError(ValueError):
    """A dataset input (image directory, annotation file or image) is missing or malformed."""


def load_coco_annotations(ann_file: str, what: str = "annotation file") -> COCO:
    """Reads and checks a COCO JSON file; returns a pycocotools COCO index (built quietly).

    Raises FileNotFoundError if the file does not exist and DatasetError (a ValueError) naming the
    file if it is not JSON or lacks the fields a detection file needs.
    """
    if not ann_file or not os.path.isfile(ann_file):
        raise FileNotFoundError(f"{what} not found: {ann_file!r}")
    try:
        with open(ann_file, "r", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {ann_file!r} is not valid JSON: {exc}") from None
    _check_coco_dict(data, ann_file, what)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _check_coco_dict(data, ann_file, what):
    if not isinstance(data, dict):
        raise DatasetError(
            f"{what} {ann_file!r}: top level must be a JSON object, got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise DatasetError(f"{what} {ann_file!r}: missing the '{key}' list")
        if not isinstance(data[key], list):
            raise DatasetError(f"{what} {ann_file!r}: '{key}' must be a list")
    if not data["categories"]:
        raise DatasetError(f"{what} {ann_file!r}: 'categories' is empty")
    for c in data["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int):
            raise DatasetError(
                f"{what} {ann_file!r}: every category needs an integer 'id', got {c!r}"
            )
    image_ids = set()
    for im in data["images"]:
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(
                f"{what} {ann_file!r}: every image needs 'id' and 'file_name', got {im!r}"
            )
        image_ids.add(im["id"])
    cat_ids = {c["id"] for c in data["categories"]}
    for a in data["annotations"]:
        if not isinstance(a, dict):
            raise DatasetError(
                f"{what} {ann_file!r}: annotation entries must be objects, got {a!r}"
            )
        aid = a.get("id", "?")
        box = a.get("bbox")
        if not (
            isinstance(box, (list, tuple))
            and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)
        ):
            raise DatasetError(
                f"{what} {ann_file!r}: annotation {aid} needs 'bbox' = [x, y, w, h], got {box!r}"
            )
        if a.get("image_id") not in image_ids:
            raise DatasetError(
                f"{what} {ann_file!r}: annotation {aid} refers to unknown image_id "
                f"{a.get('image_id')!r}"
            )
        if a.get("category_id") not in cat_ids:
            raise DatasetError(
                f"{what} {ann_file!r}: annotation {aid} has unknown category_id "
                f"{a.get('category_id')!r}"
            )
        if "area" not in a:  # pycocotools' evaluation reads it
            a["area"] = float(box[2]) * float(box[3])
        a.setdefault("iscrowd", 0)
        a.setdefault("id", None)
    missing_ids = [a for a in data["annotations"] if a["id"] is None]
    if missing_ids:
        next_id = max([a["id"] for a in data["annotations"] if a["id"] is not None] + [0]) + 1
        for i, a in enumerate(missing_ids):
            a["id"] = next_id + i


def decode_image(path: str) -> Image.Image:
    """Opens an image as RGB; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"failed to decode image {path!r}: {exc}") from None


class CocoDetection(torch.utils.data.Dataset):
    """A COCO-style detection dataset.

    Items are (image, target): image a float32 tensor (3, H, W) in [0, 1]; target a dict with
    "boxes" (float32 (N, 4) XYXY in pixels), "labels" (int64 (N,), 1..K) and "image_id" (int).
    Indices may also be (index, seed) pairs (see lgf.data.sampler): the random transforms then
    draw from a generator seeded with `seed`, so augmentation does not depend on the worker or on
    where a resumed run started.

    img_dir / ann_file: the images folder and the COCO JSON file.
    transforms: a v2 transform called as transforms(image, target) (boxes are tv_tensors).
    max_images: keep only the first N images (sorted by id), for smoke runs.
    """

    def __init__(
        self,
        img_dir: str,
        ann_file: str,
        transforms: Callable | None = None,
        max_images: int | None = None,
        name: str = "dataset",
    ):
        if not img_dir or not os.path.isdir(img_dir):
            raise FileNotFoundError(f"{name}: image directory not found: {img_dir!r}")
        self.img_dir = img_dir
        self.ann_file = ann_file
        self.name = name
        self.coco = load_coco_annotations(ann_file, what=f"{name} annotation file")
        self.transforms = transforms
        ids = sorted(self.coco.imgs)
        if max_images:
            ids = ids[: int(max_images)]
        self.ids = ids
        cat_ids = sorted(self.coco.cats)
        self.cat_to_label = {cid: i + 1 for i, cid in enumerate(cat_ids)}
        self.label_to_cat_id = [0] + cat_ids  # index = label; entry 0 unused
        self.class_names = [str(self.coco.cats[c].get("name", c)) for c in cat_ids]
        missing = [
            self.coco.imgs[i]["file_name"]
            for i in ids
            if not os.path.isfile(os.path.join(img_dir, self.coco.imgs[i]["file_name"]))
        ]
        if missing:
            raise FileNotFoundError(
                f"{name}: {len(missing)} of {len(ids)} images listed in {ann_file!r} are missing "
                f"from {img_dir!r}, e.g. {missing[0]!r}"
            )

    @property
    def num_classes(self) -> int:
        """Model classes in torchvision's convention: K categories + the unused label 0."""
        return len(self.label_to_cat_id)

    def __len__(self):
        return len(self.ids)

    def image_path(self, index: int) -> str:
        return os.path.join(self.img_dir, self.coco.imgs[self.ids[index]]["file_name"])

    def kept_annotations(self, index: int, width: int, height: int) -> list[tuple[dict, list]]:
        """(annotation, XYXY box clipped to the image) of the boxes an image's target holds;
        crowd and empty boxes are left out."""
        kept = []
        for a in self.coco.imgToAnns.get(self.ids[index], []):
            if a.get("iscrowd", 0):
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            x1, y1 = max(0.0, x), max(0.0, y)
            x2, y2 = min(float(width), x + w), min(float(height), y + h)
            if x2 <= x1 or y2 <= y1:
                continue
            kept.append((a, [x1, y1, x2, y2]))
        return kept

    def raw_target(self, index: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (XYXY, clipped to the image) and labels of an image (`kept_annotations`)."""
        kept = self.kept_annotations(index, width, height)
        boxes_t = torch.tensor([box for _, box in kept], dtype=torch.float32).reshape(-1, 4)
        labels = [self.cat_to_label[a["category_id"]] for a, _ in kept]
        return boxes_t, torch.tensor(labels, dtype=torch.int64)

    def extra_targets(self, index: int, width: int, height: int) -> dict:
        """More target entries before the transforms (none here; lgf.data.masks adds masks)."""
        return {}

    def __getitem__(self, key):
        index, seed = key if isinstance(key, (tuple, list)) else (key, None)
        pil = decode_image(self.image_path(index))
        w, h = pil.size
        boxes, labels = self.raw_target(index, w, h)
        image = tv_tensors.Image(F.pil_to_tensor(pil))
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            "labels": labels,
            "image_id": int(self.ids[index]),
            **self.extra_targets(index, w, h),
        }
        if self.transforms is not None:
            if seed is None:
                image, target = self.transforms(image, target)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(int(seed))
                    image, target = self.transforms(image, target)
        image = image.as_subclass(torch.Tensor)
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor).float()
        return image, target


def collate_detection(batch: Sequence[tuple]) -> tuple[list, list]:
    """Keeps images and targets as lists (images may differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
