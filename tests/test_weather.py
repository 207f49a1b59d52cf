"""Tests of the weather corruptions (lgf/experiments/weather*.py) and `python -m train.weather`."""

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lgf.data import generate_synthetic_coco
from lgf.experiments.weather import (
    CONDITIONS,
    apply_weather,
    fog,
    image_seed,
    night,
    parse_conditions,
    rain,
    snow,
    to_uint8_hwc,
)
from lgf.experiments.weather_sets import make_weather_set
from train import weather as weather_cli


def _image(h=48, w=64, seed=0):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_coco(str(root), num_train=1, num_val=3, image_size=64, seed=0)


def _digest(folder):
    """sha256 of every file under `folder` (relative path -> hex)."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.mark.parametrize("condition", CONDITIONS)
def test_condition_keeps_shape_range_and_changes_the_image(condition):
    img = _image()
    out = apply_weather(img, condition, 3, seed=1)
    assert out.shape == img.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - img).abs().mean()) > 0.01


@pytest.mark.parametrize("condition", CONDITIONS)
def test_same_seed_same_output_other_seed_differs(condition):
    img = _image()
    a = apply_weather(img, condition, 4, seed=7)
    b = apply_weather(img, condition, 4, seed=7)
    c = apply_weather(img, condition, 4, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_uint8_input_matches_float_input():
    u8 = (
        (torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(3)) * 255)
        .round()
        .to(torch.uint8)
    )
    assert torch.equal(
        apply_weather(u8, "snow", 2, seed=0), apply_weather(u8.float() / 255, "snow", 2, seed=0)
    )


@pytest.mark.parametrize("transform", [fog, night])
def test_severity_strengthens_the_effect(transform):
    img = _image(64, 64, seed=5)
    diffs = [
        float((transform(img, s, torch.Generator().manual_seed(0)) - img).abs().mean())
        for s in range(1, 6)
    ]
    assert all(a < b for a, b in zip(diffs, diffs[1:])), diffs


def test_fog_brightens_night_darkens_and_tints_blue():
    img = torch.full((3, 32, 32), 0.3)
    assert float(fog(img, 5, torch.Generator().manual_seed(0)).mean()) > 0.45
    dark = night(img, 3, torch.Generator().manual_seed(0), glow=False)
    assert float(dark.mean()) < 0.15
    assert float(dark[2].mean()) > float(dark[0].mean())


def test_rain_and_snow_add_bright_sparse_structure():
    img = torch.full((3, 96, 96), 0.2)
    for fn in (rain, snow):
        out = fn(img, 5, torch.Generator().manual_seed(0))
        lum = out.mean(0)
        # streaks / flakes: a minority of pixels clearly brighter than the (dimmed/brightened) base
        base = float(lum.median())
        frac = float((lum > base + 0.15).float().mean())
        assert 0.001 < frac < 0.5, (fn.__name__, frac)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="condition"):
        apply_weather(_image(), "hail")
    with pytest.raises(ValueError, match="severity"):
        apply_weather(_image(), "fog", 6)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        apply_weather(torch.rand(1, 8, 8), "fog")
    with pytest.raises(ValueError, match="hail"):
        parse_conditions("fog,hail")
    assert parse_conditions("night, fog,night") == ("night", "fog")


def test_image_seed_depends_on_every_part():
    base = image_seed(0, "fog", 3, 10)
    assert base == image_seed(0, "fog", 3, 10)
    others = {
        image_seed(1, "fog", 3, 10),
        image_seed(0, "rain", 3, 10),
        image_seed(0, "fog", 4, 10),
        image_seed(0, "fog", 3, 11),
    }
    assert base not in others and len(others) == 4


def test_weather_set_is_deterministic_and_keeps_boxes(tiny_set, tmp_path):
    src_img, src_ann = tiny_set["val_img"], tiny_set["val_ann"]
    a = make_weather_set(src_img, src_ann, str(tmp_path / "a"), "rain", 3, seed=5)
    b = make_weather_set(src_img, src_ann, str(tmp_path / "b"), "rain", 3, seed=5)
    c = make_weather_set(src_img, src_ann, str(tmp_path / "c"), "rain", 3, seed=6)
    da, db, dc = (_digest(os.path.dirname(p["ann_file"]) + "/images") for p in (a, b, c))
    assert len(da) == 3 and da == db
    assert all(da[k] != dc[k] for k in da)

    with open(src_ann) as f:
        src = json.load(f)
    with open(a["ann_file"]) as f:
        out = json.load(f)
    assert out["annotations"] == src["annotations"] and out["categories"] == src["categories"]
    assert out["images"] == sorted(src["images"], key=lambda im: im["id"])
    for im in out["images"]:
        with Image.open(os.path.join(a["img_dir"], im["file_name"])) as pil:
            assert pil.size == (im["width"], im["height"])
        with Image.open(os.path.join(src_img, im["file_name"])) as orig:
            assert not np.array_equal(
                np.asarray(orig.convert("RGB")),
                np.asarray(Image.open(os.path.join(a["img_dir"], im["file_name"])).convert("RGB")),
            )


def test_weather_set_reuses_a_complete_copy(tiny_set, tmp_path):
    paths = make_weather_set(
        tiny_set["val_img"], tiny_set["val_ann"], str(tmp_path), "fog", 2, seed=0
    )
    first = os.path.join(paths["img_dir"], sorted(os.listdir(paths["img_dir"]))[0])
    mtime = os.stat(first).st_mtime_ns
    make_weather_set(tiny_set["val_img"], tiny_set["val_ann"], str(tmp_path), "fog", 2, seed=0)
    assert os.stat(first).st_mtime_ns == mtime
    make_weather_set(tiny_set["val_img"], tiny_set["val_ann"], str(tmp_path), "fog", 2, seed=1)
    assert os.stat(first).st_mtime_ns != mtime


def test_pixels_match_the_transform(tiny_set, tmp_path):
    paths = make_weather_set(
        tiny_set["val_img"], tiny_set["val_ann"], str(tmp_path), "night", 5, seed=2, max_images=1
    )
    with open(paths["ann_file"]) as f:
        im = json.load(f)["images"][0]
    src = torch.from_numpy(
        np.asarray(
            Image.open(os.path.join(tiny_set["val_img"], im["file_name"])).convert("RGB")
        ).copy()
    )
    gen = torch.Generator().manual_seed(image_seed(2, "night", 5, im["id"]))
    expected = to_uint8_hwc(apply_weather(src.permute(2, 0, 1), "night", 5, generator=gen))
    written = np.asarray(Image.open(os.path.join(paths["img_dir"], im["file_name"])).convert("RGB"))
    assert np.array_equal(written, expected)


def test_cli_writes_one_copy_per_condition(tiny_set, tmp_path, capsys):
    out = tmp_path / "wx"
    code = weather_cli.main(
        [
            "--src-img",
            tiny_set["val_img"],
            "--src-ann",
            tiny_set["val_ann"],
            "--out",
            str(out),
            "--conditions",
            "fog,snow",
            "--severity",
            "1",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    assert sorted(os.listdir(out)) == ["fog-s1", "snow-s1"]
    for d in ("fog-s1", "snow-s1"):
        assert len(os.listdir(out / d / "images")) == 3
        assert json.load(open(out / d / "weather.json"))["seed"] == 3
    assert (
        weather_cli.main(
            [
                "--src-img",
                str(tmp_path / "nope"),
                "--src-ann",
                tiny_set["val_ann"],
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "--src-img" in capsys.readouterr().err


def test_cli_montage(tiny_set, tmp_path):
    path = tmp_path / "m.png"
    assert (
        weather_cli.main(
            [
                "--src-img",
                tiny_set["val_img"],
                "--src-ann",
                tiny_set["val_ann"],
                "--montage",
                str(path),
                "--montage-width",
                "64",
            ]
        )
        == 0
    )
    with Image.open(path) as im:
        assert im.width == 64 and im.height > 5 * 40


def test_real_image_keeps_boxes(aerial_cars_kit, tmp_path):
    ann = os.path.join(aerial_cars_kit, "val.json")
    paths = make_weather_set(
        os.path.join(aerial_cars_kit, "images"), ann, str(tmp_path), "snow", 3, seed=0, max_images=1
    )
    with open(ann) as f:
        src = json.load(f)
    with open(paths["ann_file"]) as f:
        out = json.load(f)
    first = min(im["id"] for im in src["images"])
    assert [im["id"] for im in out["images"]] == [first]
    assert out["annotations"] == [a for a in src["annotations"] if a["image_id"] == first]
    assert len(out["annotations"]) > 0
