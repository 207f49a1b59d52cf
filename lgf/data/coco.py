"""COCO-style detection dataset: pycocotools index, lgf.data.decode, torchvision transforms v2.

Category ids of the annotation file are mapped to contiguous labels 1..K (sorted by id), the
torchvision convention where label 0 is never a class; `label_to_cat_id` maps them back for
evaluation. Training targets leave out crowd boxes and boxes of zero or negative size (after
clipping to the image, `lgf.data.validate.box_xyxy`); images without boxes are kept as
negatives. The annotation file is checked by `lgf.data.validate.check_coco_dict`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable, Sequence

import torch
from pycocotools.coco import COCO
from torchvision import tv_tensors

from .decode import DatasetError, read_image
from .validate import box_xyxy, check_coco_dict, check_image_size


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
    check_coco_dict(data, ann_file, what)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


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
    img_size: the model's input size (longer side after its resize), when known: images that it
    would shrink below one pixel are refused by name, from the file's width / height at once and
    from the decoded size when read.
    """

    def __init__(
        self,
        img_dir: str,
        ann_file: str,
        transforms: Callable | None = None,
        max_images: int | None = None,
        name: str = "dataset",
        img_size: int | None = None,
    ):
        if not img_dir or not os.path.isdir(img_dir):
            raise FileNotFoundError(f"{name}: image directory not found: {img_dir!r}")
        self.img_dir = img_dir
        self.ann_file = ann_file
        self.name = name
        self.img_size = img_size
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
        for i in ids:
            im = self.coco.imgs[i]
            if "width" in im and "height" in im:
                check_image_size(im["width"], im["height"], img_size, self._where(i))

    def _where(self, img_id: int) -> str:
        return f"{self.name} image {self.coco.imgs[img_id]['file_name']!r} (id {img_id})"

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
            box = box_xyxy(a["bbox"], width, height)
            if box is None:
                continue
            kept.append((a, box))
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
        pixels = read_image(self.image_path(index))
        h, w = pixels.shape[-2:]
        check_image_size(w, h, self.img_size, self._where(self.ids[index]))
        boxes, labels = self.raw_target(index, w, h)
        image = tv_tensors.Image(pixels)
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
        target["boxes"] = target["boxes"].as_subclass(torch.Tensor).float()
        return image, target


def collate_detection(batch: Sequence[tuple]) -> tuple[list, list]:
    """Keeps images and targets as lists (images may differ in size)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
