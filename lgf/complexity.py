"""Model complexity report: parameters, FLOPs, latency and images/s of each trainer mode.

What is measured: the RetinaNet in eval mode, batch size 1, on a fixed (1, 3, S, S) input,
running `model.backbone` (ResNet body, block, FPN) and `model.head` (classification and box
regression towers) directly. Left out: GeneralizedRCNNTransform (normalise/resize), anchor
generation and post-processing (score threshold, NMS), whose cost depends on the image and the
(untrained) scores rather than on the architecture.

FLOPs are torch.utils.flop_counter.FlopCounterMode's total for one such forward: convolutions and
matmuls at 2 FLOPs per multiply-add, plus the registered formula of the fused LGF op (40 FLOPs per
element, lgf_ops.flops); other elementwise ops count 0 as everywhere in FlopCounterMode. So the LGF
"reference" backend counts fewer FLOPs than the fused one for the same math (only its conv2d).

The mode list comes from `lgf.engine.MODES` (the trainer's --mode choices): a mode added there
appears here without any change.
"""

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import lgf_ops

from .blocks import LGF
from .engine import MODES, build_model

__all__ = [
    "complexity_modes",
    "build_complexity_model",
    "count_params",
    "count_flops",
    "forward_fn",
    "measure_latency",
    "complexity_report",
    "format_markdown",
    "REFERENCE_SUFFIX",
]

REFERENCE_SUFFIX = " (reference)"


def complexity_modes():
    """Every trainer mode, baseline first (the order of lgf.engine.MODES)."""
    return list(MODES)


def build_complexity_model(
    mode, backbone="resnet50", img_size=640, num_classes=4, lgf_backend=None, device="cpu"
):
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


def count_params(model):
    return sum(p.numel() for p in model.parameters())


def forward_fn(model):
    """x -> (classification logits, box regression) of backbone + FPN + head (no transform, no NMS)."""

    def run(x):
        features = list(model.backbone(x).values())
        return model.head(features)

    return run


def count_flops(fn, x):
    """FlopCounterMode total of one no-grad call fn(x)."""
    lgf_ops.available_backends()  # imports the Triton op if present, so that it gets its formula too
    lgf_ops.flops.register_flop_formulas()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(fns, x, warmup=3, repeats=10):
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


def complexity_report(
    modes=None,
    backbone="resnet50",
    img_size=640,
    num_classes=4,
    device="cpu",
    warmup=3,
    repeats=10,
    lgf_reference=True,
    progress=None,
):
    """Measures each mode; returns {"meta": {...}, "rows": [...]}.

    Each row: mode, params, flops, delta_params / delta_flops (vs the baseline row, if measured),
    latency_ms (median), latency_p25_ms, latency_p75_ms, images_per_s (1000 / median; batch 1).
    lgf_reference adds a row "lgf (reference)": the lgf mode with the plain-PyTorch backend.
    """
    device = torch.device(device)
    modes = complexity_modes() if modes is None else list(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}; expected some of {complexity_modes()}")
    entries = [(m, m, None) for m in modes]
    if lgf_reference and "lgf" in modes:
        entries.insert(modes.index("lgf") + 1, ("lgf" + REFERENCE_SUFFIX, "lgf", "reference"))
    x = torch.randn(1, 3, img_size, img_size, device=device)
    fns, rows = {}, []
    for name, mode, backend in entries:
        if progress:
            progress(f"building {name}")
        model = build_complexity_model(mode, backbone, img_size, num_classes, backend, device)
        fn = forward_fn(model)
        rows.append({"mode": name, "params": count_params(model), "flops": count_flops(fn, x)})
        fns[name] = fn
    if progress:
        progress(f"timing {len(fns)} models: {warmup} warm-up + {repeats} interleaved runs each")
    times = measure_latency(fns, x, warmup=warmup, repeats=repeats)
    base = next((r for r in rows if r["mode"] == "baseline"), None)
    for r in rows:
        t = times[r["mode"]]
        med = statistics.median(t)
        r.update(
            {
                "latency_ms": 1e3 * med,
                "latency_p25_ms": 1e3 * _quantile(t, 0.25),
                "latency_p75_ms": 1e3 * _quantile(t, 0.75),
                "images_per_s": 1.0 / med,
            }
        )
        if base is not None:
            r["delta_params"] = r["params"] - base["params"]
            r["delta_flops"] = r["flops"] - base["flops"]
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
        "measured": "model.backbone + model.head on a (1, 3, S, S) tensor, eval mode, inference_mode; "
        "no transform, anchors or NMS",
    }
    return {"meta": meta, "rows": rows}


def format_markdown(report):
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
    lines += [
        "",
        f"RetinaNet {meta['backbone']}, {meta['num_classes']} classes (incl. background), eval mode, batch 1, "
        f"input {s}x{s}, device {meta['device']} ({meta['threads']} threads), torch {meta['torch']}. "
        f"Measured: model.backbone (ResNet + block + FPN) and model.head called directly on a "
        f"(1, 3, {s}, {s}) tensor; the resize/normalise transform, anchors and NMS are not included. "
        f"Latency: {meta['warmup']} warm-up calls, then the median of {meta['repeats']} calls per model, "
        f"interleaved across models; images/s = 1000 / median latency. FLOPs: FlopCounterMode "
        f"(2 per multiply-add; the fused LGF op counted by its registered formula, other elementwise "
        f"ops not counted, so the reference LGF row counts only its convolutions). Δ: vs baseline. "
        f"The lgf row runs the fused op's {meta['lgf_fused_backend']!r} backend (backend='auto'); "
        f"LGF backends available: {', '.join(meta['lgf_backends'])}.",
    ]
    return "\n".join(lines)
