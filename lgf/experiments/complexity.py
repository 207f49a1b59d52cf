"""Model complexity report: parameters, FLOPs, latency and images/s of each trainer mode.

What is measured: the RetinaNet in eval mode, batch size 1, on a fixed (1, 3, S, S) input,
running `model.backbone` (ResNet body, block, FPN) and `model.head` (classification and box
regression towers) directly. Left out: GeneralizedRCNNTransform (normalise/resize), anchor
generation and post-processing (score threshold, NMS), whose cost depends on the image and the
(untrained) scores rather than on the architecture.

Params and FLOPs are counted by lgf.counting (FlopCounterMode, 2 FLOPs per multiply-add, the
fused LGF op by its registered formula), so the LGF "reference" backend counts fewer FLOPs than
the fused one for the same math (only its conv2d).

The mode list is `lgf.modes.MODES` (the trainer's --mode choices): a mode added there appears
here without any change.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn

import lgf_ops

from ..blocks import LGF
from ..counting import count_flops, count_params
from ..modes import MODES, build_model

__all__ = [
    "complexity_modes",
    "build_complexity_model",
    "forward_fn",
    "measure_latency",
    "complexity_report",
    "format_markdown",
    "REFERENCE_SUFFIX",
]

REFERENCE_SUFFIX = " (reference)"


def complexity_modes() -> list[str]:
    """Every trainer mode, baseline first (the order of lgf.modes.MODES)."""
    return list(MODES)


def build_complexity_model(
    mode: str,
    backbone: str = "resnet50",
    img_size: int = 640,
    num_classes: int = 4,
    lgf_backend: str | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """The trainer's model for `mode` (random init, no download), in eval mode on `device`.

    lgf_backend: if set, every LGF block of the model runs the fused op with this backend
    ("reference", "cpp", ...)."""
    model = build_model(
        {
            "mode": mode,
            "backbone": backbone,
            "num_classes": num_classes,
            "img_size": img_size,
            "weights_backbone": None,
        }
    )
    if lgf_backend is not None:
        blocks = [m for m in model.modules() if isinstance(m, LGF)]
        if not blocks:
            raise ValueError(f"mode {mode!r} has no LGF block to run with backend {lgf_backend!r}")
        for m in blocks:
            m.backend = lgf_backend
    return model.to(device).eval()


def forward_fn(model: nn.Module) -> Callable[[torch.Tensor], Any]:
    """x -> (classification logits, box regression) of backbone + FPN + head (no transform, no
    NMS)."""

    def run(x):
        features = list(model.backbone(x).values())
        return model.head(features)

    return run


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    fns: dict[str, Callable[[torch.Tensor], Any]],
    x: torch.Tensor,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, list[float]]:
    """Seconds per call of each fn(x) in `fns` ({name: fn}); returns {name: [seconds, ...]}.

    Every fn is warmed up `warmup` times, then the timed calls are interleaved (one call of each
    fn per round, `repeats` rounds), so a load change on a shared machine hits all alike."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")
    times = {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn(x)
        _sync(x.device)
        for _ in range(repeats):
            for name, fn in fns.items():
                _sync(x.device)
                t0 = time.perf_counter()
                fn(x)
                _sync(x.device)
                times[name].append(time.perf_counter() - t0)
    return times


def _quantile(values, q):
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _entries(modes: list[str], lgf_reference: bool) -> list[tuple[str, str, str | None]]:
    """(row name, mode, LGF backend override) of every row, the reference row after lgf."""
    entries = [(m, m, None) for m in modes]
    if lgf_reference and "lgf" in modes:
        entries.insert(modes.index("lgf") + 1, ("lgf" + REFERENCE_SUFFIX, "lgf", "reference"))
    return entries


def _add_latency(rows: list[dict[str, Any]], times: dict[str, list[float]]) -> None:
    base = next((r for r in rows if r["mode"] == "baseline"), None)
    for r in rows:
        t = times[r["mode"]]
        med = statistics.median(t)
        r["latency_ms"] = 1e3 * med
        r["latency_p25_ms"] = 1e3 * _quantile(t, 0.25)
        r["latency_p75_ms"] = 1e3 * _quantile(t, 0.75)
        r["images_per_s"] = 1.0 / med
        if base is not None:
            r["delta_params"] = r["params"] - base["params"]
            r["delta_flops"] = r["flops"] - base["flops"]


def complexity_report(
    modes: Iterable[str] | None = None,
    backbone: str = "resnet50",
    img_size: int = 640,
    num_classes: int = 4,
    device: str | torch.device = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    lgf_reference: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measures each mode; returns {"meta": {...}, "rows": [...]}.

    Each row: mode, params, flops, delta_params / delta_flops (vs the baseline row, if measured),
    latency_ms (median), latency_p25_ms, latency_p75_ms, images_per_s (1000 / median; batch 1).
    lgf_reference adds a row "lgf (reference)": the lgf mode with the plain-PyTorch backend.
    """
    say = progress or (lambda msg: None)
    device = torch.device(device)
    modes = complexity_modes() if modes is None else list(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; expected some of {complexity_modes()}")
    x = torch.randn(1, 3, img_size, img_size, device=device)
    fns, rows = {}, []
    for name, mode, backend in _entries(modes, lgf_reference):
        say(f"building {name}")
        model = build_complexity_model(mode, backbone, img_size, num_classes, backend, device)
        fns[name] = forward_fn(model)
        _, flops = count_flops(lambda: fns[name](x))
        rows.append({"mode": name, "params": count_params(model), "flops": flops})
    say(f"timing {len(fns)} models: {warmup} warm-up + {repeats} interleaved runs each")
    _add_latency(rows, measure_latency(fns, x, warmup=warmup, repeats=repeats))
    meta = {
        "backbone": backbone,
        "img_size": img_size,
        "num_classes": num_classes,
        "device": str(device),
        "batch_size": 1,
        "warmup": warmup,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lgf_backends": lgf_ops.available_backends(),
        "lgf_fused_backend": lgf_ops.resolve_backend("auto", device),
        "measured": "model.backbone + model.head on a (1, 3, S, S) tensor, eval mode, "
        "inference_mode; no transform, anchors or NMS",
    }
    return {"meta": meta, "rows": rows}


def format_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table with a footer that says what was measured."""
    meta, rows = report["meta"], report["rows"]
    has_delta = any("delta_params" in r for r in rows)
    head = ["mode", "params (M)"] + (["Δparams (M)"] if has_delta else []) + ["FLOPs (G)"]
    head += (["ΔFLOPs (M)"] if has_delta else []) + [
        "latency ms/img, median [p25, p75]",
        "images/s",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r["mode"], f"{r['params'] / 1e6:.3f}"]
        if has_delta:
            cells.append(f"{r['delta_params'] / 1e6:+.3f}" if "delta_params" in r else "")
        cells.append(f"{r['flops'] / 1e9:.2f}")
        if has_delta:
            cells.append(f"{r['delta_flops'] / 1e6:+.1f}" if "delta_flops" in r else "")
        cells += [
            f"{r['latency_ms']:.1f} [{r['latency_p25_ms']:.1f}, {r['latency_p75_ms']:.1f}]",
            f"{r['images_per_s']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    s = meta["img_size"]
    footer = (
        f"RetinaNet {meta['backbone']}, {meta['num_classes']} classes (incl. background), eval "
        f"mode, batch 1, input {s}x{s}, device {meta['device']} ({meta['threads']} threads), "
        f"torch {meta['torch']}. Measured: model.backbone (ResNet + block + FPN) and model.head "
        f"called directly on a (1, 3, {s}, {s}) tensor; the resize/normalise transform, anchors "
        f"and NMS are not included. Latency: {meta['warmup']} warm-up calls, then the median of "
        f"{meta['repeats']} calls per model, interleaved across models; images/s = 1000 / median "
        "latency. FLOPs: FlopCounterMode (2 per multiply-add; the fused LGF op counted by its "
        "registered formula, other elementwise ops not counted, so the reference LGF row counts "
        "only its convolutions). Δ: vs baseline. The lgf row runs the fused op's "
        f"{meta['lgf_fused_backend']!r} backend (backend='auto'); LGF backends available: "
        f"{', '.join(meta['lgf_backends'])}."
    )
    lines += ["", footer]
    return "\n".join(lines)
