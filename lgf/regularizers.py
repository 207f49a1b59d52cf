"""Training regularisers that act on the weights (not the detections).

`feature_enhancement_loss` is the published "feature enhancement" term: it penalises the size
of the deep (layer4) filters and rewards diverse shallow (layer2, the C3 stage) filters:

    R = lambda4 * sum_{conv W in layer4} ||W||_F  -  lambda2 * sum_{conv W in layer2} var(W)

Add it to the detection loss: loss = sum(loss_dict.values()) + feature_enhancement_loss(model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from .utils.unwrap import unwrap

__all__ = ["feature_enhancement_loss", "find_resnet_body", "conv_weights"]


def _has_layers(module: nn.Module, names: Sequence[str]) -> bool:
    return all(isinstance(getattr(module, n, None), nn.Module) for n in names)


def find_resnet_body(model: nn.Module, layers: Sequence[str] = ("layer2", "layer4")) -> nn.Module:
    """The module holding the ResNet stages `layers` (as attributes) inside `model`.

    Looks at the model itself (a ResNet, or a torchvision IntermediateLayerGetter body), then at
    `model.backbone.body` (torchvision detection models, including lgf's BackboneWithBlock), then
    at every submodule in order. Raises ValueError if none has all of `layers`.
    """
    model = unwrap(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    body = getattr(getattr(model, "backbone", None), "body", None)
    for candidate in (model, body):
        if candidate is not None and _has_layers(candidate, layers):
            return candidate
    for _, module in model.named_modules():
        if _has_layers(module, layers):
            return module
    raise ValueError(
        f"feature_enhancement_loss: no ResNet stages {list(layers)} found in "
        f"{type(model).__name__} (expected a torchvision ResNet, or a detection model with "
        "backbone.body.layer2/layer4)"
    )


def conv_weights(module: nn.Module) -> list[torch.Tensor]:
    """The weights of every nn.Conv2d inside `module`, in module order."""
    return [m.weight for m in module.modules() if isinstance(m, nn.Conv2d)]


def _check_lambda(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"feature_enhancement_loss: {name} must be a finite number >= 0, got {value!r}"
        )
    return float(value)


def feature_enhancement_loss(
    model: nn.Module, lambda4: float = 1e-5, lambda2: float = 1.0
) -> torch.Tensor:
    """lambda4 * sum ||W||_F over layer4 convs - lambda2 * sum var(W) over layer2 convs.

    model: a RetinaNet from lgf.models (any block or neck), a torchvision detection model with a
        ResNet body, a ResNet, or any of these wrapped by DDP or torch.compile (see
        lgf.utils.unwrap).
    ||W||_F is the Frobenius norm of each conv weight tensor; var(W) is the unbiased variance of
    all its elements (torch.var's default). Computed in float32 (outside autocast is best) and
    returned as a differentiable 0-dim tensor on the weights' device. Frozen weights
    (requires_grad=False, e.g. trainable_backbone_layers < 3) contribute a constant.
    """
    lambda4 = _check_lambda("lambda4", lambda4)
    lambda2 = _check_lambda("lambda2", lambda2)
    body = find_resnet_body(model)
    deep, shallow = conv_weights(body.layer4), conv_weights(body.layer2)
    if not deep or not shallow:
        raise ValueError("feature_enhancement_loss: layer2 or layer4 holds no nn.Conv2d")
    norm_term = torch.stack([w.float().norm() for w in deep]).sum()
    var_term = torch.stack([w.float().var() for w in shallow]).sum()
    return lambda4 * norm_term - lambda2 * var_term
