"""The trainer's modes: each `--mode` name and the detector it builds (docs/design.md §4, §5).

`MODES` is the one place that maps a mode to builder arguments: a block inserted at the insert
level, or a replacement of the FPN (neck, RetinaNet only). A new mode is one entry here; the
trainer, the grid and the complexity report pick it up. `build_model` turns a training
configuration (any object or dict with the fields of `MODEL_ARGS` and a few more) into the model
(lgf.detectors.build_detector: RetinaNet and the other torchvision ResNet-FPN detectors), and
`model_from_checkpoint` rebuilds the model a trainer checkpoint describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn as nn
from torchvision.models.detection.anchor_utils import AnchorGenerator

from .detectors import DETECTORS, anchor_kwargs, build_detector, match_pretrained_structure
from .utils.state_dicts import load_state_dict_checked

__all__ = [
    "MODES",
    "MODEL_ARGS",
    "anchor_generator",
    "model_kwargs",
    "build_model",
    "model_from_checkpoint",
]

# The order is the order of tables and of the complexity report.
MODES = {
    "baseline": {},
    "lgf": {"block": "lgf"},
    "lgf_paper": {"block": "lgf_paper"},
    "se": {"block": "se"},
    "cbam": {"block": "cbam"},
    "glmd": {"block": "glmd"},
    "sie_fpn": {"neck": "sie_fpn"},
    "asff": {"neck": "asff"},
}

# Settings that define the network: a resumed run must use the same values.
MODEL_ARGS = (
    "detector",
    "mode",
    "backbone",
    "insert_level",
    "gate",
    "num_classes",
    "img_size",
    "anchor_sizes",
)


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def anchor_generator(sizes: Sequence[int]) -> AnchorGenerator:
    """RetinaNet anchors with base sizes `sizes` (one per FPN level P3..P7), 3 scales per octave
    and aspect ratios 0.5, 1, 2, as torchvision's default (which is sizes 32, 64, 128, 256, 512)."""
    return anchor_kwargs("retinanet", sizes)["anchor_generator"]


def model_kwargs(config: Any) -> dict[str, Any]:
    """A training configuration (object or dict) -> keyword arguments of build_detector."""
    mode = _get(config, "mode", "baseline")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
    detector = _get(config, "detector") or "retinanet"
    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; expected one of {tuple(DETECTORS)}")
    num_classes = _get(config, "num_classes")
    if not num_classes:
        raise ValueError("num_classes must be set (derive it from the annotation file)")
    img_size = int(_get(config, "img_size") or 640)
    kwargs = {
        "detector": detector,
        "backbone": _get(config, "backbone", "resnet50"),
        **MODES[mode],
        "insert_level": _get(config, "insert_level", "C3"),
        "num_classes": int(num_classes),
        "weights": _get(config, "weights"),
        "weights_backbone": _get(config, "weights_backbone"),
        "gate": _get(config, "gate", "sigmoid"),
        "min_size": img_size,
        "max_size": img_size,
        DETECTORS[detector].score_kwarg: float(_get(config, "score_thresh", 0.05)),
        **anchor_kwargs(detector, _get(config, "anchor_sizes")),
    }
    if _get(config, "trainable_backbone_layers") is not None:
        kwargs["trainable_backbone_layers"] = int(_get(config, "trainable_backbone_layers"))
    return kwargs


def build_model(config: Any, **overrides: Any) -> nn.Module:
    """The detector a training configuration describes (overrides replace builder kwargs)."""
    kwargs = model_kwargs(config)
    kwargs.update(overrides)
    return build_detector(**kwargs)


def model_from_checkpoint(
    ckpt: Mapping[str, Any], use_ema: bool = True, source: str = "checkpoint"
) -> tuple[nn.Module, bool]:
    """Rebuilds the model of a trainer checkpoint (a loaded dict) and loads its weights: the EMA
    weights if asked and present, else the raw ones. No download: the weights come from the
    checkpoint, and the model is given the structure of a pretrained build
    (lgf.detectors.match_pretrained_structure). Returns (model in eval mode, whether the EMA
    weights were used). Weights that do not fit the settings raise WeightsMismatchError (a
    ValueError) naming `source`."""
    args = ckpt["args"]
    model = build_model(args, weights=None, weights_backbone=None, trainable_backbone_layers=None)
    match_pretrained_structure(
        model, _get(args, "detector") or "retinanet", _get(args, "weights"),
        _get(args, "weights_backbone"),
    )  # fmt: skip
    ema = ckpt.get("ema")
    used_ema = bool(use_ema and ema)
    load_state_dict_checked(model, ema["module"] if used_ema else ckpt["model"], source)
    model.eval()
    return model, used_ema
