"""A deterministic synthetic small-object detection set in COCO format.

Images are textured backgrounds (smooth colour blobs + grain + faint lines) with a few small
coloured shapes, one class per shape: "disc" (red), "square" (blue) and "triangle" (yellow).
Most objects are smaller than 32x32 px (COCO "small"); a few are medium; some images hold no
object at all. The same arguments give the same bytes on every machine, so it serves as the
embedded default data of the trainer, the demo and the tests.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..utils.atomic_write import write_json

CLASSES = (
    ("disc", (220, 40, 40)),
    ("square", (40, 90, 230)),
    ("triangle", (235, 210, 40)),
)
FORMAT_VERSION = 1


def _background(rng, width, height):
    coarse = rng.uniform(60, 190, size=(max(2, height // 24), max(2, width // 24), 3)).astype(
        np.uint8
    )
    base = Image.fromarray(coarse, "RGB").resize((width, height), Image.BICUBIC)
    arr = np.asarray(base, dtype=np.float32)
    arr = arr * 0.6 + arr.mean(axis=2, keepdims=True) * 0.4  # desaturate: shapes carry the colour
    arr += rng.normal(0, 10, size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        shade = int(rng.integers(70, 180))
        pts = [(float(rng.uniform(0, width)), float(rng.uniform(0, height))) for _ in range(2)]
        draw.line(pts, fill=(shade, shade, shade), width=int(rng.integers(1, 3)))
    return img.filter(ImageFilter.SMOOTH)


def _object_size(rng, width, height):
    if rng.random() < 0.12:
        return int(rng.integers(32, max(33, min(48, min(width, height) // 2))))
    return int(rng.integers(6, 30))


def _draw_shape(draw, cls, x, y, s, colour):
    if cls == 0:
        draw.ellipse([x, y, x + s - 1, y + s - 1], fill=colour)
    elif cls == 1:
        draw.rectangle([x, y, x + s - 1, y + s - 1], fill=colour)
    else:
        draw.polygon([(x + s / 2.0, y), (x, y + s - 1), (x + s - 1, y + s - 1)], fill=colour)


def _make_image(rng, width, height, max_objects, empty_prob):
    img = _background(rng, width, height)
    draw = ImageDraw.Draw(img)
    n = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    placed = []
    for _ in range(n):
        for _attempt in range(20):
            s = _object_size(rng, width, height)
            x = int(rng.integers(0, max(1, width - s)))
            y = int(rng.integers(0, max(1, height - s)))
            if all(
                x + s + 2 <= px or px + ps + 2 <= x or y + s + 2 <= py or py + ps + 2 <= y
                for px, py, ps, _ in placed
            ):
                break
        else:
            continue
        cls = int(rng.integers(0, len(CLASSES)))
        jitter = rng.integers(-25, 26, size=3)
        colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(CLASSES[cls][1], jitter))
        _draw_shape(draw, cls, x, y, s, colour)
        placed.append((x, y, s, cls))
    return img, placed


def _write_split(
    root, split, num_images, image_size, seed, max_objects, empty_prob, first_image_id
):
    img_dir = os.path.join(root, split)
    os.makedirs(img_dir, exist_ok=True)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    images, annotations = [], []
    ann_id = first_image_id * 100
    for i in range(num_images):
        width = image_size
        height = image_size if i % 3 else int(round(image_size * 0.75))
        img, placed = _make_image(rng, width, height, max_objects, empty_prob)
        image_id = first_image_id + i
        name = f"{split}_{i:05d}.png"
        # Plain writes: the set counts as complete only once meta.json (written last,
        # atomically) matches, so an interrupted generation is redone as a whole.
        img.save(os.path.join(img_dir, name), format="PNG")
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for x, y, s, cls in placed:
            ann_id += 1
            area = float(s * s) if cls == 1 else (math.pi * s * s / 4 if cls == 0 else s * s / 2.0)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": [float(x), float(y), float(s), float(s)],
                    "area": round(area, 2),
                    "iscrowd": 0,
                }
            )
    data = {
        "info": {
            "description": f"LGF synthetic small-object set ({split})",
            "version": str(FORMAT_VERSION),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"}
            for i, (name, _) in enumerate(CLASSES)
        ],
    }
    ann_file = os.path.join(root, f"{split}.json")
    write_json(data, ann_file, indent=None)
    return img_dir, ann_file


def generate_synthetic_coco(
    root: str,
    num_train: int = 160,
    num_val: int = 40,
    image_size: int = 128,
    seed: int = 0,
    max_objects: int = 6,
    empty_prob: float = 0.05,
) -> dict[str, str]:
    """Writes (or reuses) the synthetic set under `root`.

    Layout: root/train/*.png, root/train.json, root/val/*.png, root/val.json, root/meta.json.
    A set already there with the same parameters is reused (meta.json is written last, so an
    interrupted generation is redone). Returns a dict with train_img, train_ann, val_img, val_ann.
    """
    if num_train < 1 or num_val < 0:
        raise ValueError(f"num_train must be >= 1 and num_val >= 0, got {num_train}, {num_val}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 px, got {image_size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    meta = {
        "format_version": FORMAT_VERSION,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": int(image_size),
        "seed": int(seed),
        "max_objects": int(max_objects),
        "empty_prob": float(empty_prob),
    }
    paths = {
        "train_img": os.path.join(root, "train"),
        "train_ann": os.path.join(root, "train.json"),
        "val_img": os.path.join(root, "val"),
        "val_ann": os.path.join(root, "val.json"),
    }
    meta_file = os.path.join(root, "meta.json")
    if os.path.isfile(meta_file):
        try:
            with open(meta_file, "r", encoding="utf-8") as f:
                if json.load(f) == meta and all(os.path.exists(p) for p in paths.values()):
                    return paths
        except (OSError, json.JSONDecodeError):
            pass
        os.remove(meta_file)
    os.makedirs(root, exist_ok=True)
    _write_split(root, "train", num_train, image_size, seed, max_objects, empty_prob, 1)
    _write_split(root, "val", num_val, image_size, seed, max_objects, empty_prob, 1_000_000)
    write_json(meta, meta_file, indent=None)
    return paths
