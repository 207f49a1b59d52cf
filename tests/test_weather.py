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
    SEVERITIES,
    apply_weather,
    brightness,
    fog,
    frost,
    image_seed,
    night,
    parse_conditions,
    parse_severities,
    rain,
    snow,
    to_uint8_hwc,
)
from lgf.experiments.weather_sets import make_weather_set, make_weather_sets
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


def _uint8(h=20, w=30, seed=3):
    return (_image(h, w, seed) * 255).round().to(torch.uint8)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("condition", CONDITIONS)
def test_every_condition_and_severity_keeps_shape_dtype_range_and_is_deterministic(
    condition, severity
):
    for img in (_image(), _image().double(), _uint8(48, 64)):
        out = apply_weather(img, condition, severity, seed=1)
        assert out.shape == img.shape and out.dtype == img.dtype
        if img.is_floating_point():
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out, apply_weather(img, condition, severity, seed=1))
        diff = (out.double() - img.double()).abs().mean() / (255 if img.dtype == torch.uint8 else 1)
        assert float(diff) > 0.005


@pytest.mark.parametrize("condition", [c for c in CONDITIONS if c != "brightness"])
def test_same_seed_same_output_other_seed_differs(condition):
    img = _image()
    a = apply_weather(img, condition, 4, seed=7)
    b = apply_weather(img, condition, 4, seed=7)
    c = apply_weather(img, condition, 4, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_brightness_draws_nothing_random():
    # ImageNet-C's brightness has no random part: every seed gives the same image
    img = _image()
    assert torch.equal(
        apply_weather(img, "brightness", 4, seed=7), apply_weather(img, "brightness", 4, seed=8)
    )


@pytest.mark.parametrize("condition", CONDITIONS)
def test_uint8_input_is_the_float_result_rounded(condition):
    # uint8 in, uint8 out: the float computation on the same pixels, rounded to nearest
    u8 = _uint8()
    expected = apply_weather(u8.float() / 255, condition, 2, seed=0)
    assert torch.equal(
        apply_weather(u8, condition, 2, seed=0), expected.mul(255).round().to(torch.uint8)
    )


def _mean_abs_change(out, clean):
    return float((out - clean).abs().mean())


def _lost_correlation(out, clean):
    """1 - Pearson correlation with the clean image: how much of the image's own structure is
    gone, whatever is blended over it."""
    a, b = out.flatten().double(), clean.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return 1.0 - float((a @ b) / (a.norm() * b.norm()))


# The strength of each corruption. Frost is ImageNet-C's blend c0 * x + c1 * frost, whose
# coefficients raise the frost's weight relative to the image's (c1 / c0 = 0.4, 0.75, 1, 1.08,
# 1.25) while the mean change can shrink (severity 4 only dims the image against severity 3):
# its strength is the loss of the image's structure.
STRENGTH = {c: _mean_abs_change for c in CONDITIONS}
STRENGTH["frost"] = _lost_correlation


@pytest.fixture(scope="module")
def real_crop(aerial_cars_kit):
    path = os.path.join(aerial_cars_kit, "images", "MunichStreet02-MOS74.png")
    img = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
    return img[:, :200, 300:700].float() / 255


@pytest.mark.parametrize("condition", CONDITIONS)
def test_severity_strengthens_every_condition(condition, real_crop):
    measure = STRENGTH[condition]
    for img in (_image(64, 64, seed=5), _image(48, 80, seed=6), real_crop):
        values = [measure(apply_weather(img, condition, s, seed=0), img) for s in SEVERITIES]
        assert all(a < b for a, b in zip(values, values[1:])), (condition, values)


def test_brightness_is_imagenet_c_hsv_value_shift():
    """The value channel (max of R, G, B) rises by c = 0.1 * severity, clipped at 1, with hue
    and saturation kept: each pixel's channels keep their ratios; black becomes grey c."""
    img = torch.tensor([[0.2, 0.0, 0.9], [0.1, 0.0, 0.5], [0.05, 0.0, 0.2]]).view(3, 1, 3)
    for s in SEVERITIES:
        out = brightness(img, s)
        c = 0.1 * s
        v, v_out = img.amax(0), out.amax(0)
        assert torch.allclose(v_out, (v + c).clamp(max=1.0), atol=1e-6)
        assert torch.allclose(out[:, 0, 0] / out[0, 0, 0], img[:, 0, 0] / img[0, 0, 0])
        assert torch.allclose(out[:, 0, 1], torch.full((3,), c), atol=1e-6)  # black -> grey


def test_frost_is_the_imagenet_c_blend_over_a_texture():
    """Frost = c0 * image + c1 * layer with ImageNet-C's (c0, c1): on a black image the layer
    itself shows (times c1), and every severity blends the same layer for one seed."""
    black = torch.zeros(3, 40, 60)
    coeffs = {1: (1.0, 0.4), 2: (0.8, 0.6), 3: (0.7, 0.7), 4: (0.65, 0.7), 5: (0.6, 0.75)}
    layer = frost(black, 1, torch.Generator().manual_seed(3)) / 0.4
    assert 0.15 < float(layer.mean()) < 0.8 and float(layer.std()) > 0.05  # a texture
    assert float(layer[2].mean()) > float(layer[0].mean())  # bluish ice
    img = _image(40, 60, seed=9)
    for s, (c0, c1) in coeffs.items():
        out = frost(img, s, torch.Generator().manual_seed(3))
        assert torch.allclose(out, (c0 * img + c1 * layer).clamp(0, 1), atol=1e-5)


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
    assert parse_severities("1, 3,5,3") == (1, 3, 5)
    assert parse_severities(2) == (2,)
    for bad in ("0", "6", "2.5", "x", ","):
        with pytest.raises(ValueError, match="severities"):
            parse_severities(bad)
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


def test_cli_severities_make_one_copy_per_condition_and_severity(tiny_set, tmp_path, capsys):
    out = tmp_path / "wx"
    argv = ["--src-img", tiny_set["val_img"], "--src-ann", tiny_set["val_ann"], "--out", str(out)]
    argv += ["--conditions", "frost,brightness", "--max-images", "1"]
    assert weather_cli.main(argv + ["--severities", "1,3"]) == 0
    names = ["brightness-s1", "brightness-s3", "frost-s1", "frost-s3"]
    assert sorted(os.listdir(out)) == names
    printed = capsys.readouterr().out
    assert all(f"{n}: --val-img" in printed for n in names)
    meta = json.load(open(out / "frost-s3" / "weather.json"))
    assert meta["condition"] == "frost" and meta["severity"] == 3 and meta["num_images"] == 1
    # the library call gives the same copies, keyed by split name
    sets = make_weather_sets(
        tiny_set["val_img"], tiny_set["val_ann"], str(out), "frost", [3, 1], max_images=1
    )
    assert list(sets) == ["frost-s3", "frost-s1"]
    with pytest.raises(SystemExit):  # one of --severity and --severities
        weather_cli.main(argv + ["--severity", "2", "--severities", "1,2"])
    assert weather_cli.main(argv + ["--severities", "1,7"]) == 2
    assert "--severities" in capsys.readouterr().err


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
