"""lgf.data.validate: bad annotation files are refused by file and id, dropped boxes are counted
once, and images the model's resize would shrink to nothing are refused by name (issue 19)."""

import json
import os
import warnings

import pytest
from PIL import Image

from lgf.data import CocoDetection, DatasetError, build_transforms, load_coco_annotations


def _ann(**overrides):
    data = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 6]},
            {"id": 11, "image_id": 2, "category_id": 3, "bbox": [4, 4, 8, 8]},
        ],
        "categories": [{"id": 3, "name": "car"}],
    }
    data.update(overrides)
    return data


def _write(tmp_path, data, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))  # NaN and Infinity are written as JSON's extensions
    return str(path)


def _refused(tmp_path, data, *fragments):
    path = _write(tmp_path, data)
    with pytest.raises(DatasetError) as err:
        load_coco_annotations(path)
    msg = str(err.value)
    for fragment in ("ann.json",) + fragments:
        assert fragment in msg, (fragment, msg)


def test_a_good_file_loads_without_warnings(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        coco = load_coco_annotations(_write(tmp_path, _ann()))
    assert sorted(coco.anns) == [10, 11] and coco.anns[10]["area"] == 30.0


def test_duplicate_annotation_ids(tmp_path):
    anns = _ann()["annotations"]
    anns[1]["id"] = 10
    _refused(tmp_path, _ann(annotations=anns), "annotation id 10", "more than once")


def test_duplicate_image_ids(tmp_path):
    images = _ann()["images"]
    images[1]["id"] = 1
    _refused(tmp_path, _ann(images=images), "image id 1", "more than once")


def test_duplicate_category_ids(tmp_path):
    cats = [{"id": 3, "name": "car"}, {"id": 3, "name": "bus"}]
    _refused(tmp_path, _ann(categories=cats), "category id 3", "more than once")


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf"), True, "7", None, [1]], ids=repr
)
def test_non_finite_or_non_numeric_boxes(tmp_path, bad):
    anns = _ann()["annotations"]
    anns[1]["bbox"] = [bad, 10, 5, 5]
    _refused(tmp_path, _ann(annotations=anns), "annotation 11", "four finite numbers")


def test_string_and_bool_ids(tmp_path):
    images = _ann()["images"]
    images[0]["id"] = "1"
    _refused(tmp_path, _ann(images=images), "image ids must be integers", "'1' (a str)")
    anns = _ann()["annotations"]
    anns[0]["id"] = "ten"
    _refused(tmp_path, _ann(annotations=anns), "annotation ids must be integers", "'ten'")
    anns = _ann()["annotations"]
    anns[0]["image_id"] = True  # equal to 1 in Python, not an id
    _refused(tmp_path, _ann(annotations=anns), "annotation 10", "unknown image_id True")


def test_empty_image_list_and_bad_sizes(tmp_path):
    _refused(tmp_path, _ann(images=[], annotations=[]), "'images' is empty")
    images = _ann()["images"]
    images[0]["width"] = float("nan")
    _refused(tmp_path, _ann(images=images), "image 1 (a.png)", "'width' must be a positive")


def test_dropped_boxes_are_counted_once_and_all_dropped_is_refused(tmp_path):
    anns = _ann()["annotations"] + [
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 4]},  # no width
        {"id": 13, "image_id": 1, "category_id": 3, "bbox": [5, 5, 3, -2]},  # negative height
        {"id": 14, "image_id": 2, "category_id": 3, "bbox": [100, 5, 3, 3]},  # right of the image
        {"id": 15, "image_id": 2, "category_id": 3, "bbox": [1, 1, 0, 0], "iscrowd": 1},  # crowd
    ]
    with pytest.warns(UserWarning) as record:
        load_coco_annotations(_write(tmp_path, _ann(annotations=anns)))
    msgs = [str(w.message) for w in record]
    assert len(msgs) == 1, msgs
    assert "ann.json" in msgs[0] and "3 of 5 boxes" in msgs[0]
    assert "2 of zero or negative size (e.g. annotation 12)" in msgs[0]
    assert "1 outside their image (e.g. annotation 14)" in msgs[0]
    only_bad = [a for a in anns if a["id"] in (12, 14)]
    _refused(tmp_path, _ann(annotations=only_bad), "every box would be dropped", "2 of 2 boxes")


def _one_image_set(tmp_path, width, height, with_size=True):
    os.makedirs(tmp_path / "img", exist_ok=True)
    Image.new("RGB", (width, height), (9, 9, 9)).save(tmp_path / "img" / "strip.png")
    image = {"id": 5, "file_name": "strip.png"}
    if with_size:
        image.update(width=width, height=height)
    data = _ann(
        images=[image],
        annotations=[{"id": 1, "image_id": 5, "category_id": 3, "bbox": [0, 0, 2, 2]}],
    )
    return str(tmp_path / "img"), _write(tmp_path, data)


def test_an_image_the_resize_would_shrink_to_nothing_is_named(tmp_path):
    img_dir, ann = _one_image_set(tmp_path, 4000, 12)
    with pytest.raises(DatasetError) as err:
        CocoDetection(img_dir, ann, build_transforms(False), img_size=96, name="train")
    msg = str(err.value)
    assert "strip.png" in msg and "id 5" in msg and "4000x12" in msg
    assert "shorter side would be 0.29 px" in msg and ">= 42 px" in msg
    CocoDetection(img_dir, ann, img_size=3200)  # 12 * 0.8 = 9.6 px: fine
    # without width/height in the file, the decoded size is checked when the image is read
    img_dir, ann = _one_image_set(tmp_path / "nosize", 4000, 12, with_size=False)
    ds = CocoDetection(img_dir, ann, build_transforms(False), img_size=96)
    with pytest.raises(DatasetError, match=r"strip\.png.*4000x12"):
        ds[0]


def test_42_pixels_is_enough_at_96_and_the_model_agrees(tmp_path):
    """The limit is the model's own: torchvision's resize turns 4000x42 into 96x1 (and runs)."""
    import torch

    from lgf.modes import build_model

    img_dir, ann = _one_image_set(tmp_path, 4000, 42)
    ds = CocoDetection(img_dir, ann, build_transforms(False), img_size=96)
    image, _ = ds[0]
    model = build_model(
        {"mode": "baseline", "backbone": "resnet18", "num_classes": 2, "img_size": 96}
    ).eval()
    with torch.no_grad():
        model([image])
