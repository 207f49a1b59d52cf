"""What a resumed run may change (docs/design.md §5).

A resumed run continues the optimisation its checkpoint describes, so every setting that shapes
the network or the optimisation must be the one the checkpoint was trained with: the optimizer
and its hyper-parameters, the schedule and its length, batch and accumulation, precision,
clipping, regularisers, EMA, the training data and the seed. Those are refused by name when
they differ. Settings that change only what is evaluated or where data is read from are
accepted with a warning (WARN_ON_RESUME); where and how the run executes, and where it stops
(FREE_ON_RESUME), may change freely. A setting in neither list is refused, so a new
`TrainConfig` field is safe until someone decides otherwise.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from ..modes import MODEL_ARGS
from ..utils.setting_errors import SettingError
from .checkpoint import primitive_args
from .config import RUNTIME_FIELDS, TrainConfig

__all__ = ["WARN_ON_RESUME", "FREE_ON_RESUME", "check_resume_compatible"]

WARN_ON_RESUME = frozenset(
    {
        "data_path",  # a moved copy of the same images
        "train_img",
        "train_ann",
        "synthetic_dir",
        "val_img",
        "val_ann",
        "max_val_images",
        "eval_every",
        "best_metric",
        "area_ranges",
        "score_thresh",
        "weights_backbone",  # the initial weights; the checkpoint's replace them
        "weights",
        "finetune_from",
        "sync_bn",
        "deterministic",
    }
)
FREE_ON_RESUME = RUNTIME_FIELDS | {"max_iters", "test_only"}

_DEFAULTS = primitive_args(dataclasses.asdict(TrainConfig()))


def _differences(ckpt_args: dict[str, Any], config: TrainConfig) -> list[tuple[str, Any, Any]]:
    now = primitive_args(config)
    diffs = []
    for key, new in now.items():
        if key in FREE_ON_RESUME:
            continue
        old = ckpt_args.get(key, _DEFAULTS.get(key))
        if old != new:
            diffs.append((key, old, new))
    return diffs


def check_resume_compatible(ckpt_args: dict[str, Any], config: TrainConfig, path: str) -> None:
    """Refuses to resume `path` when a network or optimisation setting differs from the
    checkpoint's (naming every such setting), and warns for the harmless ones. Settings the
    checkpoint does not record are compared with their defaults."""
    diffs = _differences(ckpt_args, config)
    refused = [d for d in diffs if d[0] not in WARN_ON_RESUME]
    warned = [d for d in diffs if d[0] in WARN_ON_RESUME]
    if refused:
        model = any(key in MODEL_ARGS for key, _, _ in refused)
        what = "model and training settings" if model else "training settings"
        raise SettingError(
            lambda n: (
                f"{n('resume')} {path!r}: the checkpoint was trained with "
                + "; ".join(
                    f"{n(k)} {old} but this run has {n(k)} {new}" for k, old, new in refused
                )
                + f". A resumed run must keep the {what}: give the checkpoint's values, or "
                f"start a new run (another {n('output_dir')}, or {n('overwrite')})"
            )
        )
    for key, old, new in warned:
        warnings.warn(
            f"resuming {path!r} with {key} {new!r} instead of the checkpoint's {old!r}",
            stacklevel=2,
        )
