"""Pictures of a trained model's detections and, for gated blocks, its gate maps.

For each image: the detections above a score threshold (boxes, class names, scores) and, when the
model's block has `gate_maps(x)` (LGF: s_l, s_g; LGFPaper: w_L, w_G; each averaged over channels),
the two gate maps as heat maps over the image area, in one PNG. Baseline / SE / CBAM models (no
gate maps) give the detection panel only.

The gate maps are computed on the feature the block receives inside the normal forward pass
(captured by a forward pre-hook), i.e. on the resized and padded input of the model's transform;
they are cropped to the resized image and scaled back to the original image size.
"""

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_checkpoint
from .data import decode_image
from .engine import model_from_checkpoint

__all__ = ["load_model", "find_gate_block", "predict_with_gates", "render", "visualize_images"]


def load_model(checkpoint, device="cpu", use_ema=True):
    """(model in eval mode on `device`, class names indexed by label - 1) from a trainer checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(ckpt, use_ema=use_ema)
    names = list(ckpt.get("class_names") or [])
    return model.to(device).eval(), names


def find_gate_block(model):
    """The first submodule with a `gate_maps` method (the inserted LGF / LGFPaper block), or None."""
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
def predict_with_gates(model, image):
    """Runs the model on one (3, H, W) float image in [0, 1] (on the model's device).

    Returns {"boxes" (K, 4) XYXY, "labels" (K,) in 1..num_classes-1, "scores" (K,)} as numpy
    arrays in original image pixels, plus "gates": None, or a pair of (H, W) numpy maps (local gate, global gate)."""
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


def _gate_titles(block):
    from .blocks import LGFPaper

    if isinstance(block, LGFPaper):
        return ("w_L (local gate, channel mean)", "w_G (global gate, channel mean)")
    return ("s_l (local gate, channel mean)", "s_g (global gate, channel mean)")


def render(
    image, result, class_names, path, score_thresh=0.3, title=None, gate_titles=None, layout="auto"
):
    """Writes the PNG: image with boxes (+ the two gate heat maps if result["gates"]).

    layout: "row" (panels side by side), "column" (stacked), or "auto" (stacked for images more
    than 1.6 times wider than tall, side by side otherwise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if layout not in ("auto", "row", "column"):
        raise ValueError(f"layout must be 'auto', 'row' or 'column', got {layout!r}")
    img = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    h, w = img.shape[:2]
    gates = result.get("gates")
    n = 3 if gates is not None else 1
    if layout == "auto":
        layout = "column" if w > 1.6 * h else "row"
    panel_w = min(9.0, max(4.0, w / 110.0))
    panel_h = panel_w * h / w
    if layout == "row":
        fig, axes = plt.subplots(
            1, n, figsize=(panel_w * n + 0.8 * (n - 1), panel_h + 0.6), squeeze=False
        )
    else:
        fig, axes = plt.subplots(n, 1, figsize=(panel_w + 1.0, (panel_h + 0.5) * n), squeeze=False)
    axes = axes.ravel()
    ax = axes[0]
    ax.imshow(img)
    keep = result["scores"] >= score_thresh
    fontsize = max(5, min(8, int(panel_w)))
    for (x1, y1, x2, y2), lab, sc in zip(
        result["boxes"][keep], result["labels"][keep], result["scores"][keep]
    ):
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", linewidth=1.0)
        )
        name = class_names[lab - 1] if 0 < lab <= len(class_names) else str(int(lab))
        ax.text(
            x1,
            y1 - 1,
            f"{name} {sc:.2f}",
            color="black",
            fontsize=fontsize,
            bbox={"facecolor": "lime", "alpha": 0.7, "pad": 0.5, "linewidth": 0},
        )
    ax.set_title(
        f"{int(keep.sum())} detections (score >= {score_thresh:g})" if title is None else title,
        fontsize=9,
    )
    if gates is not None:
        titles = gate_titles or ("local gate", "global gate")
        for ax, gate, t in zip(axes[1:], gates, titles):
            im = ax.imshow(gate, cmap="magma")
            ax.set_title(f"{t}: min {gate.min():.4f}, max {gate.max():.4f}", fontsize=9)
            cbar = fig.colorbar(
                im,
                ax=ax,
                pad=0.02,
                fraction=0.046 * (panel_h / panel_w) ** 0.5 if layout == "row" else 0.03,
            )
            cbar.formatter.set_useOffset(False)
            cbar.update_ticks()
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def visualize_images(
    checkpoint, images, out_dir, score_thresh=0.3, device="cpu", use_ema=True, layout="auto"
):
    """One PNG (and a JSON of the detections above the threshold) per image in `out_dir`.

    Returns the list of PNG paths (OUT/<image stem>.png; repeated stems get a numeric suffix)."""
    if not images:
        raise ValueError("--images: give at least one image file")
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"--images: file not found: {missing[0]!r}")
    model, names = load_model(checkpoint, device=device, use_ema=use_ema)
    if hasattr(model, "score_thresh"):  # RetinaNet drops scores below its own threshold first
        model.score_thresh = min(float(model.score_thresh), float(score_thresh))
    block = find_gate_block(model)
    titles = _gate_titles(block) if block is not None else None
    os.makedirs(out_dir, exist_ok=True)
    written, used = [], set()
    for path in images:
        pil = decode_image(path)
        image = (
            torch.from_numpy(np.asarray(pil, dtype=np.uint8).copy())
            .permute(2, 0, 1)
            .float()
            .div_(255.0)
        )
        result = predict_with_gates(model, image)
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        png = os.path.join(out_dir, name + ".png")
        render(
            image, result, names, png, score_thresh=score_thresh, gate_titles=titles, layout=layout
        )
        keep = result["scores"] >= score_thresh
        dets = [
            {
                "box_xyxy": [round(float(v), 2) for v in b],
                "label": int(lab),
                "class": names[lab - 1] if 0 < lab <= len(names) else str(int(lab)),
                "score": round(float(s), 4),
            }
            for b, lab, s in zip(
                result["boxes"][keep], result["labels"][keep], result["scores"][keep]
            )
        ]
        with open(os.path.join(out_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump(
                {
                    "image": os.path.abspath(path),
                    "checkpoint": os.path.abspath(checkpoint),
                    "score_thresh": score_thresh,
                    "detections": dets,
                    "gate_maps": block is not None,
                },
                f,
                indent=1,
            )
        written.append(png)
    return written
