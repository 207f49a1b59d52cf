"""Image files -> float tensors in [0, 1], keeping what 16-bit and float images hold.

`read_image` is the one decoder of the package: training, evaluation, the visualizer and the
weather tools read every image through it. It returns a float32 tensor (3, H, W) in [0, 1]:

- 8-bit images (RGB, L, P, RGBA, CMYK, YCbCr, ...) are divided by 255 after Pillow's conversion
  to RGB (a palette is applied, alpha is dropped as Pillow and OpenCV do, CMYK is converted
  without a colour profile).
- 16-bit unsigned grayscale (Pillow's I;16 modes) is divided by 65535; Pillow's 32-bit integer
  mode I is read the same way when its values lie in 0..65535 (how many 16-bit files open) and
  refused otherwise, since its scale is then unknown.
- 16-bit colour PNGs are decoded with torchvision (Pillow reads only their high bytes) and divided
  by 65535. 16-bit colour TIFFs (and PNGs, should torchvision's decoder be gone) are read at
  8-bit precision, the most Pillow can, with a warning once per folder.
- Float images (mode F, e.g. float TIFFs) are taken as they are: values outside [0, 1] are
  clipped with a warning naming the file; NaN or infinite pixels are refused.
- Grayscale is replicated to three channels.

Errors are DatasetError (a ValueError) or FileNotFoundError and name the file.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["DatasetError", "read_image", "decode_image"]

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_warned_16bit: set[str] = set()  # one warning per folder, not per image


class DatasetError(ValueError):
    """A dataset input (image directory, annotation file or image) is missing or malformed."""


def _png_is_16bit_colour(path: str) -> bool:
    # IHDR is the first chunk: signature (8) + length (4) + "IHDR" (4) + width, height (8), then
    # the bit depth and the colour type (2 grey+alpha... 6 RGBA; 0 is plain grey).
    with open(path, "rb") as f:
        head = f.read(26)
    return (
        len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[24] == 16 and head[25] in (2, 4, 6)
    )


def _from_png16(path: str) -> torch.Tensor | None:
    """A 16-bit colour PNG at full precision, or None when torchvision's decoder is gone."""
    try:
        from torchvision.io import ImageReadMode, decode_png, read_file
    except ImportError:
        return None
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (pinned here)
        warnings.simplefilter("ignore", DeprecationWarning)
        raw = decode_png(read_file(path), mode=ImageReadMode.UNCHANGED)  # uint16 (C, H, W)
    arr = raw.numpy().astype(np.float32) / 65535.0
    channels = arr.shape[0]
    if channels == 2:  # grey + alpha
        arr = np.repeat(arr[:1], 3, axis=0)
    return torch.from_numpy(np.ascontiguousarray(arr[:3]))


def _from_integer(im: Image.Image, path: str) -> np.ndarray:
    arr = np.asarray(im)
    if im.mode in _SIXTEEN_BIT:
        return arr.astype(np.float32) / 65535.0
    low, high = int(arr.min(initial=0)), int(arr.max(initial=0))
    if low < 0 or high > 65535:
        raise DatasetError(
            f"image {path!r}: 32-bit integer pixels (Pillow mode I) range over {low}..{high}, "
            "outside 0..65535, so their scale is unknown; convert the image to 8 or 16 bits "
            "or to float in [0, 1]"
        )
    return arr.astype(np.float32) / 65535.0


def _from_float(im: Image.Image, path: str) -> np.ndarray:
    arr = np.asarray(im, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise DatasetError(f"image {path!r}: {bad} float pixels are NaN or infinite")
    low, high = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
    if low < 0.0 or high > 1.0:
        warnings.warn(
            f"image {path!r}: float pixels range over [{low:.4g}, {high:.4g}]; values outside "
            "[0, 1] are clipped",
            stacklevel=3,
        )
        arr = np.clip(arr, 0.0, 1.0)
    return arr


def _bits_per_sample(im: Image.Image, path: str) -> int:
    if im.format == "PNG":
        return 16 if _png_is_16bit_colour(path) else 8
    bits = im.tag_v2.get(258, 8) if hasattr(im, "tag_v2") else 8
    return max(bits) if isinstance(bits, tuple) else int(bits)


def _warn_16bit_colour(im: Image.Image, path: str) -> None:
    bits = _bits_per_sample(im, path)
    if bits <= 8:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if folder in _warned_16bit:
        return
    _warned_16bit.add(folder)
    warnings.warn(
        f"image {path!r}: a {bits}-bit colour {im.format} is read at 8-bit precision (Pillow "
        "reads no more); later such files in this folder are not reported",
        stacklevel=3,
    )


def _to_chw(im: Image.Image, path: str) -> np.ndarray:
    """(H, W) or (H, W, 3) float32 in [0, 1] from a Pillow image of any mode."""
    if im.mode in _SIXTEEN_BIT or im.mode == "I":
        return _from_integer(im, path)
    if im.mode == "F":
        return _from_float(im, path)
    if im.format in ("TIFF", "PNG"):
        _warn_16bit_colour(im, path)
    if im.mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    try:
        rgb = im.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DatasetError(f"image {path!r}: cannot convert mode {im.mode} to RGB: {exc}") from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


def read_image(path: str) -> torch.Tensor:
    """The image at `path` as a float32 tensor (3, H, W) in [0, 1] (see the module's rules)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path!r}")
    try:
        if _png_is_16bit_colour(path) and (full := _from_png16(path)) is not None:
            return full
        with Image.open(path) as im:
            arr = _to_chw(im, path)
    except DatasetError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise DatasetError(f"failed to decode image {path!r}: {exc}") from None
    if arr.ndim == 2:
        arr = np.broadcast_to(arr[None], (3,) + arr.shape)
    else:
        arr = arr.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def decode_image(path: str) -> Image.Image:
    """The image at `path` as an 8-bit RGB Pillow image, from `read_image` (so 16-bit and float
    images are scaled to 0..255, never clipped at 255)."""
    arr = read_image(path).mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")
