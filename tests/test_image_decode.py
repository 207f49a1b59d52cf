"""lgf.data.decode: 16-bit, float, grayscale and other modes keep their information (issues 17, 19).

Every file is written in tmp_path (Pillow or the writers in image_writers.py) from known pixel
values, then read back through read_image and through the dataset the trainer uses."""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from image_writers import ramp16, write_png16, write_tiff_rgb16
from PIL import Image

from lgf.data import CocoDetection, DatasetError, build_transforms, decode_image, read_image


def _expect(path, want_hw3):
    got = read_image(str(path))
    assert got.dtype == torch.float32 and got.shape == (3,) + want_hw3.shape[:2]
    torch.testing.assert_close(got, torch.from_numpy(want_hw3).permute(2, 0, 1), rtol=0, atol=1e-7)
    return got


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_16bit_grayscale_keeps_its_values(tmp_path, ext):
    pixels = ramp16(9, 11)[..., 0]
    path = tmp_path / f"ir.{ext}"
    Image.fromarray(pixels).save(path)  # Pillow mode I;16
    want = np.repeat((pixels.astype(np.float32) / 65535.0)[..., None], 3, axis=2)
    got = _expect(path, want)
    assert len(torch.unique(got)) > 50  # not a blank image


def test_16bit_colour_png_keeps_all_16_bits(tmp_path):
    pixels = ramp16(6, 7, 3, seed=1)
    write_png16(tmp_path / "rgb16.png", pixels)
    _expect(tmp_path / "rgb16.png", pixels.astype(np.float32) / 65535.0)
    rgba = ramp16(6, 7, 4, seed=2)
    write_png16(tmp_path / "rgba16.png", rgba)
    _expect(tmp_path / "rgba16.png", rgba[..., :3].astype(np.float32) / 65535.0)
    grey_alpha = ramp16(6, 7, 2, seed=3)
    write_png16(tmp_path / "la16.png", grey_alpha)
    grey = grey_alpha[..., :1].astype(np.float32) / 65535.0
    _expect(tmp_path / "la16.png", np.repeat(grey, 3, axis=2))


def test_16bit_colour_tiff_is_read_at_8_bits_with_a_warning(tmp_path):
    pixels = ramp16(5, 4, 3, seed=4)
    path = tmp_path / "rgb16.tif"
    write_tiff_rgb16(path, pixels)
    with pytest.warns(UserWarning, match="rgb16.tif.*8-bit precision"):
        got = read_image(str(path))
    want = torch.from_numpy(pixels.astype(np.float32) / 65535.0).permute(2, 0, 1)
    assert (got - want).abs().max() < 1 / 255 + 1e-6  # the high byte of every value
    assert got.std() > 0.1


def test_float_tiff_as_is_clipped_with_a_warning_or_refused(tmp_path):
    inside = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(inside).save(tmp_path / "f.tif")  # Pillow mode F
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _expect(tmp_path / "f.tif", np.repeat(inside[..., None], 3, axis=2))
    outside = inside * 3 - 1
    Image.fromarray(outside).save(tmp_path / "wide.tif")
    with pytest.warns(UserWarning, match=r"wide\.tif.*\[-1, 2\].*clipped"):
        got = read_image(str(tmp_path / "wide.tif"))
    torch.testing.assert_close(got[0], torch.from_numpy(np.clip(outside, 0, 1)))
    bad = inside.copy()
    bad[1, 2] = np.nan
    Image.fromarray(bad).save(tmp_path / "nan.tif")
    with pytest.raises(DatasetError, match=r"nan\.tif.*1 float pixels are NaN or infinite"):
        read_image(str(tmp_path / "nan.tif"))


def test_32bit_integer_images_in_16bit_range_or_refused(tmp_path):
    pixels = (ramp16(4, 5)[..., 0]).astype(np.int32)
    Image.fromarray(pixels).save(tmp_path / "i.tif")  # Pillow mode I
    _expect(tmp_path / "i.tif", np.repeat((pixels / 65535.0).astype(np.float32)[..., None], 3, 2))
    Image.fromarray(pixels * 4).save(tmp_path / "big.tif")
    with pytest.raises(DatasetError, match=r"big\.tif.*mode I.*outside 0\.\.65535"):
        read_image(str(tmp_path / "big.tif"))


def test_8bit_modes_grey_alpha_palette_cmyk_bilevel(tmp_path):
    rgb = np.random.default_rng(5).integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "l.png")
    _expect(tmp_path / "l.png", np.repeat(grey[..., None], 3, 2).astype(np.float32) / 255.0)
    rgba = np.concatenate([rgb, np.full((4, 6, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    _expect(tmp_path / "rgba.png", rgb.astype(np.float32) / 255.0)  # alpha dropped
    pal = Image.fromarray(rgb, "RGB").quantize(8)
    pal.save(tmp_path / "p.png")
    _expect(tmp_path / "p.png", np.asarray(pal.convert("RGB"), np.float32) / 255.0)
    cmyk = Image.fromarray(rgb, "RGB").convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    _expect(tmp_path / "c.tif", np.asarray(cmyk.convert("RGB"), np.float32) / 255.0)
    Image.fromarray(grey > 128).save(tmp_path / "b.png")  # mode 1
    bits = np.repeat((grey > 128)[..., None], 3, 2).astype(np.float32)
    _expect(tmp_path / "b.png", bits)


def test_decode_image_scales_16bit_to_8bit_instead_of_clipping(tmp_path):
    pixels = ramp16(8, 8)[..., 0]
    Image.fromarray(pixels).save(tmp_path / "ir.png")
    rgb = np.asarray(decode_image(str(tmp_path / "ir.png")))
    want = np.round(pixels.astype(np.float64) / 65535.0 * 255.0)
    assert rgb.dtype == np.uint8 and np.abs(rgb[..., 1] - want).max() <= 1
    assert (rgb == 255).mean() < 0.05


def test_dataset_item_of_a_16bit_infrared_image(tmp_path):
    """Issue 17: grayscale and 16-bit images (infrared) load correctly for training."""
    pixels = ramp16(20, 30)[..., 0]
    os.makedirs(tmp_path / "img")
    Image.fromarray(pixels).save(tmp_path / "img" / "ir.png")
    ann = {
        "images": [{"id": 1, "file_name": "ir.png", "width": 30, "height": 20}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 8, 6]}],
        "categories": [{"id": 1, "name": "car"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = CocoDetection(str(tmp_path / "img"), str(tmp_path / "ann.json"), build_transforms(False))
    image, target = ds[0]
    want = torch.from_numpy(pixels.astype(np.float32) / 65535.0)
    for c in range(3):
        torch.testing.assert_close(image[c], want, rtol=0, atol=1e-7)
    assert target["boxes"].tolist() == [[2.0, 3.0, 10.0, 9.0]]


def test_undecodable_and_missing_files_are_named(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"x\.png"):
        read_image(str(tmp_path / "x.png"))
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        read_image(str(tmp_path / "gone.png"))


def test_a_cut_png_header_is_a_decode_error(tmp_path):
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(DatasetError, match=r"failed to decode image.*cut\.png"):
        read_image(str(tmp_path / "cut.png"))
