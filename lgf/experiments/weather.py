"""Synthetic weather corruptions (fog, rain, snow, night, frost, brightness) for robustness
evaluation sets.

Small torch transforms of an RGB image tensor (3, H, W), float in [0, 1] or uint8, each with a
severity 1..5 that scales its parameters and a torch.Generator for every random draw, so the
same generator seed gives the same output. The output has the input's shape and dtype (floating
inputs are computed in float32 and clamped to [0, 1]; uint8 is rounded). Pixel sizes (streak
length, flake size, blur) scale with the image size (`_pixel_scale`), so a severity looks alike
on a 400 px and a 1700 px image. Image geometry is never changed: boxes stay valid as they are.

- fog: haze blend toward a grey-white airlight, its density varying over the image with a smooth
  random field (no depth map), plus a slight blur.
- rain: sparse drops motion-blurred into slanted streaks (one random angle per image), blended as
  light grey, over a slightly dimmed and blurred image.
- snow: flakes of several sizes (soft discs) over a brightened, slightly washed-out image.
- night: gamma darkening and exposure drop, a blue tint, sensor noise, and optional warm glows
  (headlights / street lights).
- frost: ImageNet-C's blend c0 * x + c1 * frost with its coefficients per severity; the frost
  layer is a generated ice texture (patchy cover, fine grain, needle crystals) instead of
  ImageNet-C's frost photographs.
- brightness: ImageNet-C's brightness: the HSV value channel raised by 0.1 .. 0.5, clipped at 1
  (no random draw).

docs/experiments.md says, per corruption, where this follows the robustness benchmark of
Michaelis et al. (2019) and where it differs. lgf.experiments.weather_sets writes corrupted
copies of whole datasets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.setting_errors import SettingError

__all__ = [
    "CONDITIONS",
    "SEVERITIES",
    "fog",
    "rain",
    "snow",
    "night",
    "frost",
    "brightness",
    "check_condition",
    "check_severity",
    "apply_weather",
    "image_seed",
    "parse_conditions",
    "parse_severities",
    "to_float_image",
    "to_uint8_hwc",
]

# new conditions go at the end: a condition's position seeds its images (image_seed)
CONDITIONS = ("fog", "rain", "snow", "night", "frost", "brightness")
SEVERITIES = (1, 2, 3, 4, 5)


def check_condition(condition: str) -> None:
    """Raises ValueError unless `condition` is one of CONDITIONS."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")


def check_severity(severity: int) -> int:
    """Raises ValueError unless `severity` is one of SEVERITIES; returns its index."""
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    return int(severity) - 1


def _level(values, severity):
    return values[check_severity(severity)]


def to_float_image(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) uint8 or float tensor -> float32 in [0, 1] (a new tensor)."""
    if not torch.is_tensor(image) or image.dim() != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"image must be an RGB tensor of shape (3, H, W), got {shape}")
    if image.dtype == torch.uint8:
        return image.float().div(255.0)
    if not image.is_floating_point():
        raise ValueError(f"image must be uint8 or floating point, got {image.dtype}")
    return image.float().clamp(0.0, 1.0)


def _like(out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """float32 result in [0, 1] -> the dtype of the input image (uint8: rounded to nearest)."""
    out = out.clamp(0.0, 1.0)
    if image.dtype == torch.uint8:
        return out.mul(255.0).round().to(torch.uint8)
    return out.to(image.dtype)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) uint8, or float in [0, 1] -> numpy uint8 (H, W, 3), rounded to nearest."""
    if image.dtype != torch.uint8:
        image = _like(image.float(), torch.empty(0, dtype=torch.uint8))
    return image.permute(1, 2, 0).contiguous().numpy()


def _pixel_scale(h, w):
    """Size factor of pixel-sized effects: 1 for a ~512x512 image, clipped to [0.5, 3]."""
    return float(min(3.0, max(0.5, math.sqrt(h * w) / 512.0)))


def _gaussian_kernel1d(sigma):
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x, sigma):
    """Separable Gaussian blur of a (C, H, W) tensor, reflect padding; sigma <= 0 is a no-op."""
    if sigma <= 0:
        return x
    k = _gaussian_kernel1d(sigma)
    r = (k.numel() - 1) // 2
    c = x.shape[0]
    y = x.unsqueeze(0)
    mode = "reflect" if min(x.shape[1], x.shape[2]) > r else "replicate"
    y = F.conv2d(
        F.pad(y, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c
    )
    y = F.conv2d(
        F.pad(y, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c
    )
    return y.squeeze(0)


def _smooth_field(h, w, generator, cells=(3, 6, 12)):
    """A smooth random field (1, H, W) in [0, 1]: octaves of bicubically upsampled uniform noise.

    `cells` is the number of noise cells along the shorter side for each octave (coarse to fine,
    amplitudes 1, 1/2, 1/4, ...)."""
    field = torch.zeros(1, 1, h, w)
    short = min(h, w)
    for i, n in enumerate(cells):
        gh = max(2, round(n * h / short))
        gw = max(2, round(n * w / short))
        noise = torch.rand(1, 1, gh, gw, generator=generator)
        field += F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False) * 0.5**i
    field = field[0]
    lo, hi = field.min(), field.max()
    return (field - lo) / (hi - lo).clamp_min(1e-6)


def _uniform(generator, lo, hi):
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def _impulses(h, w, density, generator):
    """(1, H, W): a value in [0.5, 1] at a `density` fraction of random pixels, 0 elsewhere."""
    mask = torch.rand(1, h, w, generator=generator) < density
    strength = 0.5 + 0.5 * torch.rand(1, h, w, generator=generator)
    return mask.float() * strength


def _line_kernel(length, angle):
    """(1, 1, K, K) anti-aliased line of `length` px through the centre, `angle` rad from vertical;
    peak value 1 (a single impulse becomes a streak of its own brightness)."""
    k = int(length) | 1
    c = (k - 1) / 2.0
    kernel = torch.zeros(k, k)
    for t in np.linspace(-c, c, 4 * k):
        x = c + t * math.sin(angle)
        y = c + t * math.cos(angle)
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < k and 0 <= yi < k:
                kernel[yi, xi] = max(float(kernel[yi, xi]), wgt)
    return (kernel / kernel.max()).view(1, 1, k, k)


# --------------------------------------------------------------------------------------------
# the conditions


def fog(
    image: torch.Tensor, severity: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Haze toward a grey-white airlight with a spatially varying density, plus a slight blur."""
    img = to_float_image(image)
    _, h, w = img.shape
    beta = _level((0.25, 0.38, 0.5, 0.62, 0.72), severity)
    sigma = _level((0.0, 0.4, 0.7, 1.0, 1.3), severity) * _pixel_scale(h, w)
    field = _smooth_field(h, w, generator)
    haze = beta * (0.55 + 0.45 * field)
    grey = _uniform(generator, 0.72, 0.9)
    airlight = torch.tensor([0.97, 0.99, 1.0]).view(3, 1, 1) * grey
    out = _blur(img, sigma) * (1.0 - haze) + airlight * haze
    return _like(out, image)


def rain(
    image: torch.Tensor, severity: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Slanted rain streaks (motion-blurred sparse drops) over a dimmed, slightly blurred image."""
    img = to_float_image(image)
    _, h, w = img.shape
    s = _pixel_scale(h, w)
    density = _level((0.0015, 0.0025, 0.004, 0.006, 0.008), severity)
    length = _level((8, 11, 14, 18, 22), severity) * s
    alpha = _level((0.45, 0.55, 0.62, 0.7, 0.78), severity)
    dim = _level((0.94, 0.9, 0.86, 0.82, 0.78), severity)
    sigma = _level((0.3, 0.5, 0.7, 0.9, 1.1), severity) * s
    angle = math.radians(_uniform(generator, -20.0, 20.0))
    drops = _impulses(h, w, density, generator)
    kernel = _line_kernel(max(3, round(length)), angle)
    pad = kernel.shape[-1] // 2
    streaks = F.conv2d(drops.unsqueeze(0), kernel, padding=pad)[0].clamp(0.0, 1.0)
    streaks = _blur(streaks, 0.5 * s)
    a = (alpha * streaks).clamp(0.0, 1.0)
    base = _blur(img, sigma) * dim
    colour = torch.tensor([0.82, 0.84, 0.88]).view(3, 1, 1)
    return _like(base * (1.0 - a) + colour * a, image)


def snow(
    image: torch.Tensor, severity: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Soft white flakes of several sizes over a brightened, washed-out image."""
    img = to_float_image(image)
    _, h, w = img.shape
    s = _pixel_scale(h, w)
    density = _level((0.0012, 0.002, 0.003, 0.0045, 0.006), severity)
    bright = _level((0.06, 0.1, 0.15, 0.2, 0.26), severity)
    flake_max = _level((0.7, 0.8, 0.88, 0.94, 1.0), severity)
    flakes = torch.zeros(1, h, w)
    # several flake sizes; smaller flakes are more numerous
    for sigma, share in ((0.6, 0.45), (1.0, 0.3), (1.6, 0.17), (2.6, 0.08)):
        sig = sigma * s
        layer = _blur(_impulses(h, w, density * share, generator), sig) * (
            2.0 * math.pi * sig * sig
        )
        flakes = torch.maximum(flakes, layer.clamp(0.0, 1.0))
    # a soft halo around each flake
    flakes = torch.maximum(flakes, _blur(flakes, 0.7 * s) * 0.8)
    grey = img.mean(0, keepdim=True)
    washed = img * 0.85 + grey * 0.15
    base = washed * (1.0 - bright) + bright
    a = (flake_max * flakes).clamp(0.0, 1.0)
    return _like(base * (1.0 - a) + 0.97 * a, image)


def night(
    image: torch.Tensor,
    severity: int = 3,
    generator: torch.Generator | None = None,
    glow: bool = True,
) -> torch.Tensor:
    """Gamma darkening, lower exposure, blue tint, sensor noise, and (glow=True) 0-3 warm glows."""
    img = to_float_image(image)
    _, h, w = img.shape
    gamma = _level((1.5, 1.8, 2.1, 2.4, 2.8), severity)
    exposure = _level((0.7, 0.58, 0.47, 0.38, 0.3), severity)
    noise_sigma = _level((0.008, 0.012, 0.018, 0.024, 0.03), severity)
    tint = torch.tensor([0.78, 0.88, 1.12]).view(3, 1, 1)
    out = img.pow(gamma) * exposure * tint
    if glow:
        n = int(torch.randint(0, 4, (), generator=generator))
        yy = torch.arange(h, dtype=torch.float32).view(h, 1)
        xx = torch.arange(w, dtype=torch.float32).view(1, w)
        warm = torch.tensor([1.0, 0.85, 0.6]).view(3, 1, 1)
        for _ in range(n):
            cy, cx = _uniform(generator, 0, h - 1), _uniform(generator, 0, w - 1)
            radius = _uniform(generator, 0.02, 0.05) * min(h, w)
            strength = _uniform(generator, 0.35, 0.7)
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * radius * radius))
            out = out + strength * blob * warm
    noise = torch.randn(3, h, w, generator=generator) * noise_sigma
    # luminance noise shared by the channels plus a smaller chroma part
    out = out + noise.mean(0, keepdim=True) + 0.3 * noise
    return _like(out, image)


def _needles(cover, generator):
    """(1, H, W) in [0, 1]: ice needles, short streaks in three random directions, seeded more
    densely where the frost `cover` (1, H, W) is thick."""
    _, h, w = cover.shape
    needles = torch.zeros(1, h, w)
    for _ in range(3):
        angle = _uniform(generator, 0.0, math.pi)
        seeds = _impulses(h, w, 1.0, generator) * (
            torch.rand(1, h, w, generator=generator) < 0.006 * cover.square()
        )
        kernel = _line_kernel(round(_uniform(generator, 4.0, 10.0)), angle)
        pad = kernel.shape[-1] // 2
        streaks = F.conv2d(seeds.unsqueeze(0), kernel, padding=pad)[0].clamp(0.0, 1.0)
        needles = torch.maximum(needles, streaks)
    return _blur(needles, 0.5)


def _frost_layer(h, w, generator):
    """(3, H, W) in [0, 1]: a generated frost texture, bluish white ice of uneven thickness with
    crystalline grain and needles, in place of ImageNet-C's frost photographs. It is drawn at
    the size of a ~512 px image and resized, so its structure scales with the image."""
    s = _pixel_scale(h, w)
    th, tw = max(1, round(h / s)), max(1, round(w / s))
    cover = _smooth_field(th, tw, generator, cells=(2, 4, 8, 16))
    grain = torch.rand(1, th, tw, generator=generator)
    grain = 0.6 * _blur(grain, 0.7) + 0.4 * _blur(grain, 2.0)
    grain = (grain - grain.mean()) / grain.std().clamp_min(1e-6)
    lum = 0.1 + 0.55 * cover + 0.07 * grain * (0.3 + cover)
    lum = lum + 0.45 * _needles(cover, generator) * (0.3 + cover)
    lum = F.interpolate(lum[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    tint = torch.tensor([0.86, 0.93, 1.0]).view(3, 1, 1)
    return (lum.clamp(0.0, 1.0) * tint).clamp(0.0, 1.0)


def frost(
    image: torch.Tensor, severity: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ImageNet-C's frost blend, c0 * image + c1 * frost layer, over a generated frost texture."""
    img = to_float_image(image)
    _, h, w = img.shape
    c0, c1 = _level(((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)), severity)
    return _like(c0 * img + c1 * _frost_layer(h, w, generator), image)


def brightness(
    image: torch.Tensor, severity: int = 3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ImageNet-C's brightness: HSV value V -> min(V + c, 1), c = 0.1 .. 0.5, hue and saturation
    kept. With them fixed, RGB scales with V, so each pixel is multiplied by V' / V (a black pixel
    becomes grey V'). No random draw: `generator` is not used."""
    img = to_float_image(image)
    c = _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)
    v = img.amax(0, keepdim=True)
    v_new = (v + c).clamp(0.0, 1.0)
    out = torch.where(v > 0, img * (v_new / v.clamp_min(1e-12)), v_new.expand_as(img))
    return _like(out, image)


_TRANSFORMS = {
    "fog": fog,
    "rain": rain,
    "snow": snow,
    "night": night,
    "frost": frost,
    "brightness": brightness,
}


def apply_weather(
    image: torch.Tensor,
    condition: str,
    severity: int = 3,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Applies one condition of CONDITIONS at severity 1..5.

    Randomness: `generator` if given, else a generator seeded with `seed` (default 0).
    Returns the input's shape and dtype (floating: values in [0, 1]).
    """
    check_condition(condition)
    check_severity(severity)
    if generator is None:
        generator = torch.Generator().manual_seed(int(seed or 0))
    return _TRANSFORMS[condition](image, severity, generator)


def image_seed(seed: int, condition: str, severity: int, image_id: int) -> int:
    """Seed of one image's generator, from (seed, condition, severity, image id) (64-bit)."""
    check_condition(condition)
    key = [int(seed) % 2**32, CONDITIONS.index(condition), int(severity), int(image_id) % 2**32]
    state = np.random.SeedSequence(key).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def parse_severities(text: str | int | Sequence[int]) -> tuple[int, ...]:
    """'1,3,5' (or an int, or a list) -> a tuple of valid severities, order kept, no duplicates;
    errors name the setting `severities`."""
    items = str(text).split(",") if isinstance(text, (str, int)) else list(text)
    out = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if not item.isdigit() or int(item) not in SEVERITIES:
            raise SettingError(
                lambda n, item=item: f"{n('severities')}: {item!r} is not a severity 1..5"
            )
        if int(item) not in out:
            out.append(int(item))
    if not out:
        raise SettingError(lambda n: f"{n('severities')}: no severity given; expected 1..5")
    return tuple(out)


def parse_conditions(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'fog,rain' (or a list) -> a tuple of valid condition names, order kept, no duplicates."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in CONDITIONS:
            raise SettingError(
                lambda n, name=name: (
                    f"{n('conditions')}: unknown condition {name!r}; expected some of {CONDITIONS}"
                )
            )
        if name not in names:
            names.append(name)
    if not names:
        raise SettingError(
            lambda n: f"{n('conditions')}: no condition given; expected some of {CONDITIONS}"
        )
    return tuple(names)
