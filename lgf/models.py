"""RetinaNet (torchvision, ResNet + FPN) with an optional block on one backbone level and an
optional replacement of the FPN (neck).

The builders follow torchvision's `retinanet_resnet50_fpn` code path (ResNet, `_resnet_fpn_extractor`
with returned layers 2, 3, 4 and `LastLevelP6P7(256, 256)`, i.e. v1 semantics), load torchvision
weights if asked, and only then insert the block: `model.backbone` becomes a `BackboneWithBlock`,
a `BackboneWithFPN` that keeps the same `body` and `fpn` (so every torchvision state-dict key is
unchanged) and adds `block`, applied to the chosen level between `body` and `fpn`.

    C3 = ResNet layer2 (stride 8), C4 = layer3 (stride 16), C5 = layer4 (stride 32).

A neck (`neck="sie_fpn"` or `"asff"`, see lgf.peers) replaces `backbone.fpn` by a subclass of
torchvision's FeaturePyramidNetwork with the same in/out channels, output keys and FPN module
names; the FPN's (possibly pretrained) weights are copied into it, so again every torchvision
state-dict key is kept and only the neck's new modules add keys.
"""

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import resnet
from torchvision.models.detection import RetinaNet, RetinaNet_ResNet50_FPN_Weights
from torchvision.models.detection._utils import overwrite_eps
from torchvision.models.detection.backbone_utils import (
    BackboneWithFPN,
    _resnet_fpn_extractor,
    _validate_trainable_layers,
)
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

import lgf_ops

from .blocks import CBAM, GATES, LGF, SE, LGFPaper
from .peers import GLMD, NECKS, make_neck

__all__ = [
    "BLOCKS",
    "LEVELS",
    "BACKBONES",
    "NECKS",
    "BackboneWithBlock",
    "make_block",
    "make_neck",
    "level_channels",
    "build_retinanet",
    "retinanet_resnet18_fpn",
    "retinanet_resnet34_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet101_fpn",
    "block_complexity",
    "model_complexity",
]

_BLOCK_CLASSES = {"lgf": LGF, "lgf_paper": LGFPaper, "se": SE, "cbam": CBAM, "glmd": GLMD}
_NO_BLOCK = (None, "none", "baseline")
BLOCKS = ("none", "baseline") + tuple(_BLOCK_CLASSES)

# insert level -> (ResNet layer, index k of layer{k}); _resnet_fpn_extractor returns layers
# [2, 3, 4] under the feature names "0", "1", "2".
LEVELS = {"C3": ("layer2", 2), "C4": ("layer3", 3), "C5": ("layer4", 4)}
_RETURNED_LAYERS = [2, 3, 4]

# backbone -> (torchvision constructor, its weights enum); expansion 4 for Bottleneck ResNets.
BACKBONES = {
    "resnet18": (resnet.resnet18, resnet.ResNet18_Weights, 1),
    "resnet34": (resnet.resnet34, resnet.ResNet34_Weights, 1),
    "resnet50": (resnet.resnet50, resnet.ResNet50_Weights, 4),
    "resnet101": (resnet.resnet101, resnet.ResNet101_Weights, 4),
}


def _normalize_level(insert_level):
    key = insert_level.upper() if isinstance(insert_level, str) else insert_level
    if key not in LEVELS:
        raise ValueError(f"insert_level must be one of {tuple(LEVELS)}, got {insert_level!r}")
    return key


def level_channels(backbone, insert_level):
    """Channels of the ResNet feature at `insert_level` (e.g. 512 for resnet50 C3)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
    _, k = LEVELS[_normalize_level(insert_level)]
    return 64 * 2 ** (k - 1) * BACKBONES[backbone][2]


def make_block(block, channels, *, gate="sigmoid", **block_kwargs):
    """Build a block by name for `channels` input channels; None for no block.

    block: None, "none", "baseline", "lgf", "lgf_paper", "se", "cbam", "glmd", or a callable
        `block(channels, **block_kwargs) -> nn.Module`. `gate` ("sigmoid", "sum", "softmax")
        applies to "lgf" only; `block_kwargs` go to the block's constructor (e.g. backend="reference"
        or gn_groups=16 for LGF, reduction=8 for SE/CBAM).
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {GATES}, got {gate!r}")
    if callable(block) and not isinstance(block, str):
        return block(channels, **block_kwargs)
    name = block.lower() if isinstance(block, str) else block
    if name not in _NO_BLOCK and name not in _BLOCK_CLASSES:
        raise ValueError(f"block must be one of {BLOCKS}, None, or a callable; got {block!r}")
    if name != "lgf" and gate != "sigmoid":
        raise ValueError(f"gate={gate!r} applies to block='lgf' only (got block={block!r})")
    if name in _NO_BLOCK:
        if block_kwargs:
            raise ValueError(
                f"block_kwargs {sorted(block_kwargs)} given but block={block!r} builds no block"
            )
        return None
    if name == "lgf":
        if "gate" in block_kwargs:
            raise ValueError("pass the LGF gate as gate=..., not inside block_kwargs")
        return LGF(channels, gate=gate, **block_kwargs)
    return _BLOCK_CLASSES[name](channels, **block_kwargs)


class BackboneWithBlock(BackboneWithFPN):
    """`BackboneWithFPN` with a block on one body feature: body -> block(feature) -> fpn.

    It reuses the given `body` and `fpn` modules (no copies), so its state-dict keys are the
    torchvision ones plus `block.*`. `out_channels` is the FPN's.
    """

    def __init__(self, backbone_with_fpn, block, insert_level="C3"):
        # Deliberately skips BackboneWithFPN.__init__, which would build a new body and FPN.
        nn.Module.__init__(self)
        if not isinstance(backbone_with_fpn, BackboneWithFPN):
            raise TypeError(
                f"backbone_with_fpn must be a torchvision BackboneWithFPN, got {type(backbone_with_fpn).__name__}"
            )
        level = _normalize_level(insert_level)
        layer, _ = LEVELS[level]
        feature = backbone_with_fpn.body.return_layers.get(layer)
        if feature is None:
            raise ValueError(
                f"insert_level {level} ({layer}) is not among the body's returned layers"
            )
        self.body = backbone_with_fpn.body
        self.fpn = backbone_with_fpn.fpn
        self.out_channels = backbone_with_fpn.out_channels
        self.block = block
        self.insert_level = level
        self.feature_name = feature

    def forward(self, x):
        feats = self.body(x)
        feats[self.feature_name] = self.block(feats[self.feature_name])
        return self.fpn(feats)

    def extra_repr(self):
        return f"insert_level={self.insert_level!r}, feature={self.feature_name!r}"


def _install_neck(backbone_with_fpn, neck):
    """Replaces `backbone_with_fpn.fpn` by `neck`, after copying the FPN's weights into it.

    `neck` must hold the FPN's modules under the same names (the lgf.peers necks subclass
    FeaturePyramidNetwork); it may only add keys.
    """
    old = backbone_with_fpn.fpn
    result = neck.load_state_dict(old.state_dict(), strict=False)
    new_keys = set(neck.state_dict()) - set(old.state_dict())
    if result.unexpected_keys or set(result.missing_keys) != new_keys:
        raise RuntimeError(
            f"{type(neck).__name__} does not extend the FPN's state dict: unexpected "
            f"{result.unexpected_keys}, missing {sorted(set(result.missing_keys) - new_keys)}"
        )
    neck.to(next(old.parameters()).device)
    backbone_with_fpn.fpn = neck


def _verify_backbone_weights(backbone, weights_backbone):
    enum = BACKBONES[backbone][1]
    try:
        return enum.verify(weights_backbone)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"weights_backbone={weights_backbone!r} is not a valid {enum.__name__}: {e}"
        ) from e


def _retinanet(
    backbone,
    *,
    block=None,
    insert_level="C3",
    num_classes=None,
    weights=None,
    weights_backbone=None,
    progress=True,
    trainable_backbone_layers=None,
    gate="sigmoid",
    block_kwargs=None,
    neck=None,
    neck_kwargs=None,
    **kwargs,
):
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {tuple(BACKBONES)}, got {backbone!r}")
    level = _normalize_level(insert_level)
    channels = level_channels(backbone, level)
    # Build the block and neck first: a bad name fails before any weights are downloaded.
    block_module = make_block(block, channels, gate=gate, **(block_kwargs or {}))
    in_channels_list = [level_channels(backbone, f"C{k + 1}") for k in _RETURNED_LAYERS]
    neck_module = make_neck(
        neck, in_channels_list, 256, LastLevelP6P7(256, 256), **(neck_kwargs or {})
    )

    if weights is not None:
        if backbone != "resnet50":
            raise ValueError(
                f"torchvision has RetinaNet weights for resnet50 only; use weights=None for {backbone}"
            )
        try:
            weights = RetinaNet_ResNet50_FPN_Weights.verify(weights)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"weights={weights!r} is not a valid RetinaNet_ResNet50_FPN_Weights: {e}"
            ) from e
        weights_backbone = None
        n_categories = len(weights.meta["categories"])
        if num_classes is not None and num_classes != n_categories:
            raise ValueError(
                f"num_classes={num_classes} but weights {weights} have {n_categories} classes"
            )
        num_classes = n_categories
    elif num_classes is None:
        num_classes = 91
    weights_backbone = _verify_backbone_weights(backbone, weights_backbone)

    is_trained = weights is not None or weights_backbone is not None
    trainable_backbone_layers = _validate_trainable_layers(
        is_trained, trainable_backbone_layers, 5, 3
    )
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d

    resnet_fn = BACKBONES[backbone][0]
    body = resnet_fn(weights=weights_backbone, progress=progress, norm_layer=norm_layer)
    fpn_backbone = _resnet_fpn_extractor(
        body,
        trainable_backbone_layers,
        returned_layers=_RETURNED_LAYERS,
        extra_blocks=LastLevelP6P7(256, 256),
    )
    model = RetinaNet(fpn_backbone, num_classes, **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
        if weights == RetinaNet_ResNet50_FPN_Weights.COCO_V1:
            overwrite_eps(model, 0.0)

    if neck_module is not None:
        _install_neck(model.backbone, neck_module)
    if block_module is not None:
        model.backbone = BackboneWithBlock(model.backbone, block_module, level)
    return model


_BUILDER_DOC = """RetinaNet {depth} + FPN (torchvision v1 recipe), with an optional block before the FPN.

    Args:
        block: None / "none" / "baseline" (plain torchvision model), "lgf", "lgf_paper", "se",
            "cbam", "glmd", or a callable `block(channels, **block_kwargs)`.
        insert_level: "C3" (layer2), "C4" (layer3) or "C5" (layer4).
        num_classes: classes including background (default 91, or the weights' classes).
        weights: torchvision RetinaNet weights (enum or name, resnet50 only), loaded before the
            block is inserted.
        weights_backbone: torchvision ImageNet weights of the ResNet (enum or name).
        trainable_backbone_layers: 0-5 as in torchvision (only with pretrained weights).
        progress: show download progress.
        gate: LGF gate mode ("sigmoid", "sum", "softmax"); block="lgf" only.
        block_kwargs: dict of extra block constructor arguments (e.g. {{"backend": "reference"}}).
        neck: None / "fpn" (torchvision's FPN), "sie_fpn" or "asff" (lgf.peers), replacing the
            FPN after the weights are loaded (its FPN weights are copied into the neck).
        neck_kwargs: dict of extra neck constructor arguments (e.g. {{"compress": 8}} for asff).
        **kwargs: passed to torchvision.models.detection.RetinaNet (min_size, max_size, ...).
    """


def _make_builder(depth):
    def builder(
        *,
        block=None,
        insert_level="C3",
        num_classes=None,
        weights=None,
        weights_backbone=None,
        trainable_backbone_layers=None,
        progress=True,
        gate="sigmoid",
        block_kwargs=None,
        neck=None,
        neck_kwargs=None,
        **kwargs,
    ):
        return _retinanet(
            depth,
            block=block,
            insert_level=insert_level,
            num_classes=num_classes,
            weights=weights,
            weights_backbone=weights_backbone,
            progress=progress,
            trainable_backbone_layers=trainable_backbone_layers,
            gate=gate,
            block_kwargs=block_kwargs,
            neck=neck,
            neck_kwargs=neck_kwargs,
            **kwargs,
        )

    builder.__name__ = builder.__qualname__ = f"retinanet_{depth}_fpn"
    builder.__doc__ = _BUILDER_DOC.format(depth=depth.replace("resnet", "ResNet-"))
    return builder


retinanet_resnet18_fpn = _make_builder("resnet18")
retinanet_resnet34_fpn = _make_builder("resnet34")
retinanet_resnet50_fpn = _make_builder("resnet50")
retinanet_resnet101_fpn = _make_builder("resnet101")


def build_retinanet(
    backbone="resnet50",
    block=None,
    insert_level="C3",
    num_classes=91,
    weights=None,
    weights_backbone=None,
    gate="sigmoid",
    block_kwargs=None,
    neck=None,
    neck_kwargs=None,
    **kwargs,
):
    """RetinaNet with `backbone` in {resnet18, resnet34, resnet50, resnet101}; see
    `retinanet_resnet50_fpn` for the arguments (kwargs may hold trainable_backbone_layers,
    progress and RetinaNet's own arguments)."""
    return _retinanet(
        backbone,
        block=block,
        insert_level=insert_level,
        num_classes=num_classes,
        weights=weights,
        weights_backbone=weights_backbone,
        gate=gate,
        block_kwargs=block_kwargs,
        neck=neck,
        neck_kwargs=neck_kwargs,
        **kwargs,
    )


def _register_lgf_flops(module):
    if any(isinstance(m, LGF) for m in module.modules()):
        # The Triton op registers itself on first import; give it its FLOP formula before counting.
        lgf_ops.available_backends()
        lgf_ops.flops.register_flop_formulas()


def block_complexity(block, channels, height, width, *, gate="sigmoid", **block_kwargs):
    """(params, flops) of a block alone on a (1, channels, height, width) input, in eval mode.

    `block` is a name accepted by `make_block` or an nn.Module. FLOPs are what
    torch.utils.flop_counter.FlopCounterMode counts for one forward pass: convolutions and
    matmuls (2 per multiply-add) plus the registered formula of the fused LGF op (see
    lgf_ops.flops); elementwise PyTorch ops count 0, as everywhere in FlopCounterMode.
    """
    if isinstance(block, nn.Module):
        module = block
    else:
        module = make_block(block, channels, gate=gate, **block_kwargs)
        if module is None:
            return 0, 0
    _register_lgf_flops(module)
    params = sum(p.numel() for p in module.parameters())
    ref = next(module.parameters(), None)
    x = torch.randn(1, channels, height, width, device=ref.device if ref is not None else "cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(x)
    finally:
        module.train(was_training)
    return params, counter.get_total_flops()


def _count(fn):
    with FlopCounterMode(display=False) as counter:
        out = fn()
    return out, counter.get_total_flops()


def _n_params(module):
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def model_complexity(model, img_size=640):
    """Params and FLOPs of a RetinaNet from this module on one (1, 3, img_size, img_size) image.

    Counts the network proper: backbone body, block (if any), FPN or neck, and the head, run in
    eval mode without autograd on a tensor already at `img_size` (the transform's resize and
    normalisation and the box decoding / NMS are not counted). FLOPs as in `block_complexity`.

    Returns {"params": int, "flops": int, "parts": {"body" | "block" | "fpn" | "head":
    {"params": int, "flops": int}}} ("block" only when the model has one; "fpn" is the neck,
    whatever its class). "params" is every parameter of the model.
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 32:
        raise ValueError(f"img_size must be an int >= 32, got {img_size!r}")
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, BackboneWithFPN) or not hasattr(model, "head"):
        raise TypeError(
            f"model must be a torchvision RetinaNet with a BackboneWithFPN, got {type(model).__name__}"
        )
    _register_lgf_flops(model)
    block = getattr(backbone, "block", None)
    ref = next(model.parameters())
    x = torch.randn(1, 3, img_size, img_size, device=ref.device, dtype=ref.dtype)
    was_training = model.training
    model.eval()
    parts = {}
    try:
        with torch.no_grad():
            feats, flops = _count(lambda: backbone.body(x))
            parts["body"] = {"params": _n_params(backbone.body), "flops": flops}
            if block is not None:
                name = backbone.feature_name
                feats[name], flops = _count(lambda: block(feats[name]))
                parts["block"] = {"params": _n_params(block), "flops": flops}
            pyramid, flops = _count(lambda: backbone.fpn(feats))
            parts["fpn"] = {"params": _n_params(backbone.fpn), "flops": flops}
            _, flops = _count(lambda: model.head(list(pyramid.values())))
            parts["head"] = {"params": _n_params(model.head), "flops": flops}
    finally:
        model.train(was_training)
    return {
        "params": _n_params(model),
        "flops": sum(p["flops"] for p in parts.values()),
        "parts": parts,
    }
