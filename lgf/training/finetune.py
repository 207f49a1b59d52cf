"""Starting a run from one of our checkpoints (`finetune_from`): the base-then-few-shot schedule.

Every tensor whose name and shape match the new model is loaded; when the class counts differ
the class-dependent layers (lgf.heads) keep their fresh initialisation. The rest of the
checkpoint (optimizer, schedule, counters) is not used: the run starts at step 0. The report says
what was loaded and what was not, and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from ..heads import class_head_prefixes
from .checkpoint import load_checkpoint

__all__ = ["LoadReport", "load_matching", "finetune_from_checkpoint"]


@dataclass
class LoadReport:
    """What `load_matching` did with each key."""

    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)  # class head, class count differs
    shape_mismatch: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unused: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The report for logs: the count of loaded tensors, every other key by name."""
        return {**vars(self), "loaded": len(self.loaded)}

    def summary(self) -> str:
        total = len(self.loaded) + len(self.reinitialised) + len(self.shape_mismatch)
        total += len(self.missing)
        parts = [f"loaded {len(self.loaded)} of the model's {total} tensors from {self.source}"]
        for label, keys in (
            ("re-initialised class head", self.reinitialised),
            ("shape differs, kept fresh", self.shape_mismatch),
            ("not in the checkpoint, kept fresh", self.missing),
            ("in the checkpoint but not in the model", self.unused),
        ):
            if keys:
                more = f", ... ({len(keys)} in all)" if len(keys) > 4 else ""
                parts.append(f"{label}: {', '.join(keys[:4])}{more}")
        return "; ".join(parts)


def load_matching(
    model: nn.Module, state: Mapping[str, torch.Tensor], reinit_prefixes: Sequence[str] = ()
) -> LoadReport:
    """Copies every tensor of `state` whose key and shape match into `model`, except the keys
    under `reinit_prefixes`; returns what happened to each key."""
    own = model.state_dict()
    report = LoadReport()
    matched = {}
    for key, target in own.items():
        if key.startswith(tuple(reinit_prefixes)):
            report.reinitialised.append(key)
        elif key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != tuple(target.shape):
            report.shape_mismatch.append(key)
        else:
            matched[key] = state[key]
            report.loaded.append(key)
    report.unused = [k for k in state if k not in own]
    model.load_state_dict(matched, strict=False)
    return report


def finetune_from_checkpoint(model: nn.Module, path: str, num_classes: int) -> LoadReport:
    """Loads the matching tensors of a trainer checkpoint (its EMA weights when it has them, the
    weights it was evaluated with) into `model`, built for `num_classes` classes."""
    ckpt = load_checkpoint(path)
    ema = ckpt.get("ema")
    state = ema["module"] if ema else ckpt["model"]
    old_classes = ckpt.get("args", {}).get("num_classes")
    prefixes = class_head_prefixes(model) if old_classes != num_classes else ()
    report = load_matching(model, state, prefixes)
    weights = "EMA weights" if ema else "weights"
    report.source = f"the {weights} of {path} ({old_classes} -> {num_classes} classes)"
    return report
