"""Loading a state dict into a model with a message instead of torch's size-mismatch traceback.

The message names the source (a checkpoint path), the tensors that are missing, unexpected or of
another shape, and, for a torchvision detector, the class count the weights were trained for.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn

__all__ = ["WeightsMismatchError", "load_state_dict_checked"]


class WeightsMismatchError(ValueError):
    """Weights do not fit the model their settings describe."""


def _class_hint(model: nn.Module, key: str, saved: tuple) -> str:
    head = getattr(getattr(model, "head", None), "classification_head", None)
    if head is None or not key.endswith("classification_head.cls_logits.weight"):
        return ""
    return (
        f"; the weights' classification head is for {saved[0] // head.num_anchors} classes "
        f"(num_classes) but the model was built for {head.num_classes}"
    )


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def load_state_dict_checked(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str
) -> None:
    """model.load_state_dict(state_dict) (strict), after checking names and shapes; raises
    WeightsMismatchError naming `source` and the first differing tensors."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    reshaped = [
        (k, tuple(state_dict[k].shape), tuple(own[k].shape))
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or reshaped):
        model.load_state_dict(state_dict)
        return
    parts = []
    if reshaped:
        k, saved, want = reshaped[0]
        parts.append(
            f"{len(reshaped)} tensor(s) differ in shape, e.g. {k} is {saved} in the weights and "
            f"{want} in the model{_class_hint(model, k, saved)}"
        )
    if missing:
        parts.append(f"{len(missing)} missing ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_listed(unexpected)})")
    raise WeightsMismatchError(
        f"{source}: the weights do not fit the model its settings describe: " + "; ".join(parts)
    )
