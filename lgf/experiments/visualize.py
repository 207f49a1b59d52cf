"""Pictures of a trained model's detections and, for gated blocks, its gate maps.

For each image: the detections above a score threshold (boxes, class names, scores) and, when the
model's block has `gate_maps(x)` (LGF: s_l, s_g; LGFPaper: w_L, w_G; each averaged over channels),
the two gate maps as heat maps over the image area, in one PNG. Baseline / SE / CBAM models (no
gate maps) give the detection panel only.

The gate maps are computed on the feature the block receives inside the normal forward pass
(captured by a forward pre-hook), i.e. on the resized and padded input of the model's transform;
they are cropped to the resized image and scaled back to the original image size.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks import LGFPaper
from ..data import read_image
from ..evaluation.image_files import expand_image_paths, unique_stems
from ..modes import model_from_checkpoint
from ..training.checkpoint import load_checkpoint
from ..utils.atomic_write import atomic_write, write_json

__all__ = ["load_model", "find_gate_block", "predict_with_gates", "render", "visualize_images"]


def load_model(
    checkpoint: str, device: str | torch.device = "cpu", use_ema: bool = True
) -> tuple[nn.Module, list[str]]:
    """(model in eval mode on `device`, class names indexed by label - 1) of a trainer
    checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(ckpt, use_ema=use_ema, source=repr(checkpoint))
    names = list(ckpt.get("class_names") or [])
    return model.to(device).eval(), names


def find_gate_block(model: nn.Module) -> nn.Module | None:
    """The first submodule with a `gate_maps` method (the inserted LGF / LGFPaper block), or
    None."""
    for m in model.modules():
        if m is not model and callable(getattr(m, "gate_maps", None)):
            return m
    return None


def _to_image_size(gate, padded_hw, resized_hw, original_hw):
    """(1, 1, h, w) map on the padded input -> (H, W) numpy map on the original image."""
    g = F.interpolate(gate.float(), size=padded_hw, mode="bilinear", align_corners=False)
    g = g[:, :, : resized_hw[0], : resized_hw[1]]
    g = F.interpolate(g, size=original_hw, mode="bilinear", align_corners=False)
    return g[0, 0].cpu().numpy()


@torch.no_grad()
def predict_with_gates(model: nn.Module, image: torch.Tensor) -> dict[str, Any]:
    """Runs the model on one (3, H, W) float image in [0, 1] (on the model's device).

    Returns {"boxes" (K, 4) XYXY, "labels" (K,) in 1..num_classes-1, "scores" (K,)} as numpy
    arrays in original image pixels, plus "gates": None, or a pair of (H, W) numpy maps (local
    gate, global gate)."""
    device = next(model.parameters()).device
    block = find_gate_block(model)
    captured = {}
    handles = [
        model.transform.register_forward_hook(
            lambda m, i, out: captured.__setitem__("images", out[0])
        )
    ]
    if block is not None:
        handles.append(
            block.register_forward_pre_hook(lambda m, inp: captured.__setitem__("x", inp[0]))
        )
    try:
        out = model([image.to(device)])[0]
    finally:
        for h in handles:
            h.remove()
    # label 0 is no class in the trainer's convention (RetinaNet still scores it): drop it
    real = out["labels"] > 0
    result = {k: out[k][real].detach().cpu().numpy() for k in ("boxes", "labels", "scores")}
    result["gates"] = None
    if block is not None and "x" in captured:
        image_list = captured["images"]
        padded = tuple(image_list.tensors.shape[-2:])
        resized = tuple(image_list.image_sizes[0])
        original = tuple(image.shape[-2:])
        s_l, s_g = block.gate_maps(captured["x"])
        result["gates"] = (
            _to_image_size(s_l, padded, resized, original),
            _to_image_size(s_g, padded, resized, original),
        )
    return result


def _gate_titles(block: nn.Module) -> tuple[str, str]:
    if isinstance(block, LGFPaper):
        return ("w_L (local gate, channel mean)", "w_G (global gate, channel mean)")
    return ("s_l (local gate, channel mean)", "s_g (global gate, channel mean)")


def _figure(n_panels: int, h: int, w: int, layout: str):
    """(figure, axes, panel width in inches, resolved layout) for n panels of an h x w image."""
    import matplotlib  # an optional dependency (extra "plot"): imported when drawing

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if layout == "auto":
        layout = "column" if w > 1.6 * h else "row"
    panel_w = min(9.0, max(4.0, w / 110.0))
    panel_h = panel_w * h / w
    if layout == "row":
        size = (panel_w * n_panels + 0.8 * (n_panels - 1), panel_h + 0.6)
        fig, axes = plt.subplots(1, n_panels, figsize=size, squeeze=False)
    else:
        size = (panel_w + 1.0, (panel_h + 0.5) * n_panels)
        fig, axes = plt.subplots(n_panels, 1, figsize=size, squeeze=False)
    return fig, axes.ravel(), panel_w, layout


def _class_name(label: int, class_names: Sequence[str]) -> str:
    return class_names[label - 1] if 0 < label <= len(class_names) else str(int(label))


def _draw_detections(ax, img, result, class_names, score_thresh, fontsize, title) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(img)
    keep = result["scores"] >= score_thresh
    for (x1, y1, x2, y2), lab, sc in zip(
        result["boxes"][keep], result["labels"][keep], result["scores"][keep]
    ):
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", linewidth=1.0)
        )
        ax.text(
            x1,
            y1 - 1,
            f"{_class_name(lab, class_names)} {sc:.2f}",
            color="black",
            fontsize=fontsize,
            bbox={"facecolor": "lime", "alpha": 0.7, "pad": 0.5, "linewidth": 0},
        )
    if title is None:
        title = f"{int(keep.sum())} detections (score >= {score_thresh:g})"
    ax.set_title(title, fontsize=9)


def _draw_gates(fig, axes, gates, titles, colorbar_fraction: float) -> None:
    for ax, gate, t in zip(axes, gates, titles):
        im = ax.imshow(gate, cmap="magma")
        ax.set_title(f"{t}: min {gate.min():.4f}, max {gate.max():.4f}", fontsize=9)
        cbar = fig.colorbar(im, ax=ax, pad=0.02, fraction=colorbar_fraction)
        cbar.formatter.set_useOffset(False)
        cbar.update_ticks()


def render(
    image: torch.Tensor,
    result: dict[str, Any],
    class_names: Sequence[str],
    path: str,
    score_thresh: float = 0.3,
    title: str | None = None,
    gate_titles: tuple[str, str] | None = None,
    layout: str = "auto",
) -> str:
    """Writes the PNG: image with boxes (+ the two gate heat maps if result["gates"]).

    layout: "row" (panels side by side), "column" (stacked), or "auto" (stacked for images more
    than 1.6 times wider than tall, side by side otherwise)."""
    import matplotlib.pyplot as plt

    if layout not in ("auto", "row", "column"):
        raise ValueError(f"layout must be 'auto', 'row' or 'column', got {layout!r}")
    img = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    h, w = img.shape[:2]
    gates = result.get("gates")
    fig, axes, panel_w, layout = _figure(3 if gates is not None else 1, h, w, layout)
    fontsize = max(5, min(8, int(panel_w)))
    _draw_detections(axes[0], img, result, class_names, score_thresh, fontsize, title)
    if gates is not None:
        panel_h = panel_w * h / w
        fraction = 0.046 * (panel_h / panel_w) ** 0.5 if layout == "row" else 0.03
        titles = gate_titles or ("local gate", "global gate")
        _draw_gates(fig, axes[1:], gates, titles, fraction)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def _detections_record(result, names, score_thresh) -> list[dict[str, Any]]:
    keep = result["scores"] >= score_thresh
    return [
        {
            "box_xyxy": [round(float(v), 2) for v in b],
            "label": int(lab),
            "class": _class_name(lab, names),
            "score": round(float(s), 4),
        }
        for b, lab, s in zip(result["boxes"][keep], result["labels"][keep], result["scores"][keep])
    ]


def visualize_images(
    checkpoint: str,
    images: Sequence[str],
    out_dir: str,
    score_thresh: float = 0.3,
    device: str | torch.device = "cpu",
    use_ema: bool = True,
    layout: str = "auto",
) -> list[str]:
    """One PNG (and a JSON of the detections above the threshold) per image in `out_dir`.

    images: files, folders (their image files) and glob patterns. Returns the list of PNG paths
    (OUT/<image stem>.png; repeated stems get a numeric suffix)."""
    images = expand_image_paths(images)
    model, names = load_model(checkpoint, device=device, use_ema=use_ema)
    if hasattr(model, "score_thresh"):  # RetinaNet drops scores below its own threshold first
        model.score_thresh = min(float(model.score_thresh), float(score_thresh))
    block = find_gate_block(model)
    titles = _gate_titles(block) if block is not None else None
    written = []
    for path, stem in zip(images, unique_stems(images)):
        image = read_image(path)
        result = predict_with_gates(model, image)
        stem = os.path.join(out_dir, stem)
        render(image, result, names, stem + ".png", score_thresh, None, titles, layout)
        record = {
            "image": os.path.abspath(path),
            "checkpoint": os.path.abspath(checkpoint),
            "score_thresh": score_thresh,
            "detections": _detections_record(result, names, score_thresh),
            "gate_maps": block is not None,
        }
        write_json(record, stem + ".json", indent=1)
        written.append(stem + ".png")
    return written
