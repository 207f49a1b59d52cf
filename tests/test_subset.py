"""Tests of class subsets of COCO files (lgf/experiments/class_subset.py, `python -m
train.subset`)."""

import json
import os

import pytest

from lgf.data import load_coco_annotations
from lgf.experiments.class_subset import class_subset, parse_class_names
from train import subset as subset_cli


def _coco():
    cats = [{"id": 1, "name": "car"}, {"id": 3, "name": "bus"}, {"id": 5, "name": "person"}]
    images = [{"id": i, "file_name": f"{i}.png", "width": 50, "height": 40} for i in (1, 2, 3, 4)]

    def ann(aid, img, cat):
        return {"id": aid, "image_id": img, "category_id": cat, "bbox": [1, 2, 10, 8]}

    anns = [ann(1, 1, 1), ann(2, 1, 5), ann(3, 2, 5), ann(4, 3, 3), ann(5, 3, 1)]
    return {
        "info": {"description": "toy"},
        "licenses": [{"id": 1, "name": "x"}],
        "images": images,
        "annotations": anns,
        "categories": cats,
    }


def _write(tmp_path, data, name="in.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_subset_keeps_ids_and_drops_other_classes_and_empty_images(tmp_path, capsys):
    src = _write(tmp_path, _coco())
    out = tmp_path / "out" / "sub.json"
    assert subset_cli.main(["--ann", src, "--classes", "bus, car", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "car (1), bus (3)" in printed and "3 of 5 annotations, 2 of 4 images" in printed
    sub = json.loads(out.read_text())
    assert sub["categories"] == [{"id": 1, "name": "car"}, {"id": 3, "name": "bus"}]  # ids kept
    assert [a["id"] for a in sub["annotations"]] == [1, 4, 5]
    assert [im["id"] for im in sub["images"]] == [1, 3]  # 2 (only a person) and 4 (empty) go
    assert sub["licenses"] == _coco()["licenses"]
    assert sub["info"]["description"] == "toy"
    assert sub["info"]["class_subset"] == {"source": "in.json", "classes": ["bus", "car"]}
    assert sub["annotations"][0] == _coco()["annotations"][0]  # written as they were
    load_coco_annotations(str(out))  # a valid COCO file


def test_keep_empty_keeps_every_image(tmp_path):
    src = _write(tmp_path, _coco())
    out = tmp_path / "sub.json"
    argv = ["--ann", src, "--classes", "person", "--out", str(out), "--keep-empty"]
    assert subset_cli.main(argv) == 0
    sub = json.loads(out.read_text())
    assert [im["id"] for im in sub["images"]] == [1, 2, 3, 4]
    assert [a["category_id"] for a in sub["annotations"]] == [5, 5]


def test_unknown_class_names_are_named(tmp_path, capsys):
    src = _write(tmp_path, _coco())
    out = tmp_path / "sub.json"
    argv = ["--ann", src, "--classes", "car,truck,bike", "--out", str(out)]
    assert subset_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "--classes" in err and "['truck', 'bike']" in err and "'person'" in err
    assert not out.exists()
    assert subset_cli.main(["--ann", src, "--classes", "car", "--out", src]) == 2
    assert "--out must differ from --ann" in capsys.readouterr().err
    assert (
        subset_cli.main(
            ["--ann", str(tmp_path / "no.json"), "--classes", "car"] + ["--out", str(out)]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err
    twice = _coco()
    twice["categories"].append({"id": 9, "name": "car"})
    with pytest.raises(ValueError, match="several categories named"):
        class_subset(twice, ["car"])
    with pytest.raises(ValueError, match="classes"):
        parse_class_names(" , ")


def test_subset_of_the_real_set(aerial_cars_kit, tmp_path):
    src = os.path.join(aerial_cars_kit, "train.json")
    out = tmp_path / "buses.json"
    assert subset_cli.main(["--ann", src, "--classes", "bus,minibus", "--out", str(out)]) == 0
    with open(src) as f:
        full = json.load(f)
    sub = json.loads(out.read_text())
    assert {c["id"] for c in sub["categories"]} == {3, 4}
    expected = [a for a in full["annotations"] if a["category_id"] in (3, 4)]
    assert sub["annotations"] == expected and expected
    assert {im["id"] for im in sub["images"]} == {a["image_id"] for a in expected}
