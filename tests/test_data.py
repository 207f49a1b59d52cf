"""Data loading: COCO parsing, box handling, transforms, sampling, synthetic set, input errors."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lgf.data import (
    CocoDetection,
    DatasetError,
    EpochSampler,
    build_transforms,
    generate_synthetic_coco,
    load_coco_annotations,
    make_loader,
)


def _write_set(root, anns, images=None, categories=None, size=(40, 30)):
    """A tiny COCO set on disk: images `a.png`, `b.png` (solid colours) and the given
    annotations."""
    img_dir = os.path.join(root, "img")
    os.makedirs(img_dir, exist_ok=True)
    w, h = size
    images = images or [
        {"id": 7, "file_name": "a.png", "width": w, "height": h},
        {"id": 3, "file_name": "b.png", "width": w, "height": h},
    ]
    for im in images:
        Image.new("RGB", (w, h), (10, 200, 30)).save(os.path.join(img_dir, im["file_name"]))
    data = {
        "images": images,
        "annotations": anns,
        "categories": categories or [{"id": 5, "name": "five"}, {"id": 9, "name": "nine"}],
    }
    ann = os.path.join(root, "ann.json")
    with open(ann, "w") as f:
        json.dump(data, f)
    return img_dir, ann


def test_labels_contiguous_crowd_and_degenerate_boxes(tmp_path):
    anns = [
        {"id": 1, "image_id": 7, "category_id": 9, "bbox": [2, 3, 10, 5], "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 5, "bbox": [1, 1, 4, 4], "iscrowd": 1},  # crowd
        {
            "id": 3,
            "image_id": 7,
            "category_id": 5,
            "bbox": [5, 5, 0, 4],
            "iscrowd": 0,
        },  # zero width
        {
            "id": 4,
            "image_id": 7,
            "category_id": 5,
            "bbox": [5, 5, 3, -2],
            "iscrowd": 0,
        },  # negative h
        {"id": 5, "image_id": 7, "category_id": 5, "bbox": [100, 5, 3, 3], "iscrowd": 0},  # outside
        {
            "id": 6,
            "image_id": 7,
            "category_id": 5,
            "bbox": [35, 20, 20, 20],
            "iscrowd": 0,
        },  # clipped
    ]
    img_dir, ann = _write_set(str(tmp_path), anns)
    ds = CocoDetection(img_dir, ann, transforms=build_transforms(False))
    assert ds.label_to_cat_id == [0, 5, 9]
    assert ds.num_classes == 3 and ds.class_names == ["five", "nine"]
    assert ds.ids == [3, 7]  # sorted by id
    image, target = ds[1]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert target["image_id"] == 7
    torch.testing.assert_close(
        target["boxes"], torch.tensor([[2.0, 3.0, 12.0, 8.0], [35.0, 20.0, 40.0, 30.0]])
    )
    assert target["labels"].tolist() == [2, 1]
    # the image without boxes is kept, with empty (0, 4) targets
    _, empty = ds[0]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["labels"].dtype == torch.int64


def test_hflip_moves_boxes_with_image(tmp_path):
    img_dir, ann = _write_set(
        str(tmp_path),
        [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [2, 3, 10, 5], "iscrowd": 0}],
    )
    path = os.path.join(img_dir, "a.png")
    arr = np.zeros((30, 40, 3), np.uint8)
    arr[3:8, 2:12] = 255  # the box region is white
    Image.fromarray(arr).save(path)
    ds = CocoDetection(img_dir, ann, transforms=build_transforms(True, hflip=1.0))
    image, target = ds[(1, 123)]
    x1, y1, x2, y2 = target["boxes"][0].tolist()
    assert (x1, y1, x2, y2) == (28.0, 3.0, 38.0, 8.0)
    assert float(image[:, 3:8, 28:38].min()) == 1.0 and float(image[:, :, :28].max()) == 0.0


def test_per_sample_seed_makes_augmentation_reproducible(tmp_path):
    img_dir, ann = _write_set(
        str(tmp_path),
        [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [2, 3, 10, 5], "iscrowd": 0}],
    )
    ds = CocoDetection(img_dir, ann, transforms=build_transforms(True, hflip=0.5))
    flips = [ds[(1, s)][1]["boxes"][0, 0].item() for s in range(16)]
    assert set(flips) == {2.0, 28.0}  # both outcomes occur
    assert flips == [ds[(1, s)][1]["boxes"][0, 0].item() for s in range(16)]


def test_sampler_is_deterministic_shardable_and_resumable():
    s = EpochSampler(10, shuffle=True, seed=3)
    s.set_epoch(2)
    full = list(s)
    assert sorted(i for i, _ in full) == list(range(10))
    assert full == list(s)
    s.set_epoch(3)
    assert [i for i, _ in s] != [i for i, _ in full]
    s.set_epoch(2)
    s.set_start(4)
    assert list(s) == full[4:] and len(s) == 6
    shards = [EpochSampler(10, seed=3, rank=r, world_size=3) for r in range(3)]
    for sh in shards:
        sh.set_epoch(2)
    parts = [list(sh) for sh in shards]
    assert all(len(p) == 4 for p in parts)  # padded to 12: equal batches on every rank
    assert {i for p in parts for i, _ in p} == set(range(10))
    ev = [list(EpochSampler(10, shuffle=False, rank=r, world_size=3, pad=False)) for r in range(3)]
    assert sorted(i for p in ev for i, _ in p) == list(range(10))  # no duplicates in evaluation


def test_loader_batches(tmp_path):
    img_dir, ann = _write_set(
        str(tmp_path),
        [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [2, 3, 10, 5], "iscrowd": 0}],
    )
    ds = CocoDetection(img_dir, ann, transforms=build_transforms(True))
    images, targets = next(iter(make_loader(ds, 2, train=True, seed=0)))
    assert len(images) == 2 and len(targets) == 2
    assert sorted(t["image_id"] for t in targets) == [3, 7]


def test_synthetic_set_is_deterministic_and_small(tmp_path):
    a = generate_synthetic_coco(str(tmp_path / "a"), num_train=30, num_val=6, image_size=96, seed=1)
    b = generate_synthetic_coco(str(tmp_path / "b"), num_train=30, num_val=6, image_size=96, seed=1)
    for key in ("train_ann", "val_ann"):
        with open(a[key], "rb") as fa, open(b[key], "rb") as fb:
            assert fa.read() == fb.read()
    for name in ("train_00000.png", "train_00029.png"):
        with (
            open(os.path.join(a["train_img"], name), "rb") as fa,
            open(os.path.join(b["train_img"], name), "rb") as fb,
        ):
            assert fa.read() == fb.read()
    c = generate_synthetic_coco(str(tmp_path / "c"), num_train=30, num_val=6, image_size=96, seed=2)
    with open(a["train_ann"]) as fa, open(c["train_ann"]) as fc:
        assert json.load(fa)["annotations"] != json.load(fc)["annotations"]
    # reused, not regenerated, when the parameters match
    mtime = os.path.getmtime(a["train_ann"])
    assert (
        generate_synthetic_coco(str(tmp_path / "a"), num_train=30, num_val=6, image_size=96, seed=1)
        == a
    )
    assert os.path.getmtime(a["train_ann"]) == mtime
    coco = load_coco_annotations(a["train_ann"])
    assert len(coco.cats) == 3 and len(coco.imgs) == 30
    areas = [x["bbox"][2] * x["bbox"][3] for x in coco.anns.values()]
    assert len(areas) >= 30
    assert np.mean(np.array(areas) < 32 * 32) > 0.7  # mostly COCO-small objects
    ds = CocoDetection(a["train_img"], a["train_ann"], build_transforms(False))
    image, target = ds[0]
    assert image.shape[0] == 3 and target["boxes"].shape[1] == 4


# ---- bad inputs: clear errors that name the file -------------------------------------------


def test_missing_image_dir(tmp_path):
    _, ann = _write_set(str(tmp_path), [])
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="image directory not found.*nope"):
        CocoDetection(missing, ann)


def test_missing_annotation_file(tmp_path):
    img_dir, _ = _write_set(str(tmp_path), [])
    with pytest.raises(FileNotFoundError, match="annotation file not found.*missing.json"):
        CocoDetection(img_dir, str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "top level must be a JSON object"),
        ('{"images": [], "annotations": []}', "missing the 'categories' list"),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], '
            '"annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2]}], '
            '"categories": [{"id": 1, "name": "x"}]}',
            "bbox",
        ),
        (
            '{"images": [{"id": 1, "file_name": "a.png"}], '
            '"annotations": [{"id": 1, "image_id": 4, "category_id": 1, "bbox": [1, 2, 3, 4]}], '
            '"categories": [{"id": 1, "name": "x"}]}',
            "unknown image_id",
        ),
    ],
)
def test_malformed_annotation_file(tmp_path, content, message):
    img_dir, _ = _write_set(str(tmp_path), [])
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(DatasetError, match=message) as err:
        CocoDetection(img_dir, str(bad))
    assert "bad.json" in str(err.value)


def test_image_listed_but_missing(tmp_path):
    img_dir, ann = _write_set(str(tmp_path), [])
    os.remove(os.path.join(img_dir, "b.png"))
    with pytest.raises(FileNotFoundError, match="b.png"):
        CocoDetection(img_dir, ann)


def test_undecodable_image(tmp_path):
    img_dir, ann = _write_set(str(tmp_path), [])
    with open(os.path.join(img_dir, "a.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n this is not a png")
    ds = CocoDetection(img_dir, ann)
    with pytest.raises(DatasetError, match="failed to decode image.*a.png"):
        ds[1]
    ds[0]  # the good image still loads
