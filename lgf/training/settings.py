"""Checks of settings that only make sense together, and settings resolved at run time.

Errors name the settings (lgf.utils.setting_errors); the command line words them as flags.
"""

from __future__ import annotations

import torch

from ..utils.setting_errors import SettingError
from .config import TrainConfig
from .loop import AMP_DTYPES

__all__ = ["AMP_SETTINGS", "check_combinations", "resolve_amp"]

# the amp setting's values: the autocast dtypes of lgf.training.loop.AMP_DTYPES, and "auto"
AMP_SETTINGS = (*AMP_DTYPES, "auto")


def check_combinations(config: TrainConfig) -> None:
    """Refuses settings that contradict each other, before any work is done."""
    c = config
    if c.weights and c.weights_backbone:
        raise SettingError(
            lambda n: (
                f"{n('weights')} already holds the backbone's weights; drop {n('weights_backbone')}"
            )
        )
    if c.weights and c.finetune_from:
        raise SettingError(
            lambda n: (
                f"{n('weights')} and {n('finetune_from')} both give the starting weights; use one"
            )
        )
    if c.trainable_backbone_layers is not None and not (c.weights or c.weights_backbone):
        raise SettingError(
            lambda n: (
                f"{n('trainable_backbone_layers')} freezes pretrained layers: it needs "
                f"{n('weights')} or {n('weights_backbone')} (without them every layer trains)"
            )
        )


def resolve_amp(amp: str, device: torch.device) -> str:
    """ "auto" (a bare --amp) -> "fp16" on CUDA, "bf16" elsewhere; other values unchanged."""
    if amp != "auto":
        return amp
    return "fp16" if device.type == "cuda" else "bf16"
