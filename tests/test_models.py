"""Tests of the RetinaNet builder in lgf/models.py (block insertion, checkpoints, errors) and of
lgf/counting.py's block counts."""

import pytest
import torch
import torchvision
from torchvision.models.detection.backbone_utils import BackboneWithFPN

import lgf_ops
from lgf import LGF, SE, BackboneWithBlock, block_complexity, build_retinanet
from lgf.models import (
    level_channels,
    retinanet_resnet18_fpn,
    retinanet_resnet50_fpn,
)

SMALL = dict(min_size=128, max_size=128)  # keep GeneralizedRCNNTransform from resizing to 800


def _images_and_targets(n=2, size=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=gen) for _ in range(n)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 30.0, 28.0], [60.0, 64.0, 90.0, 100.0]]),
            "labels": torch.tensor([1, 2]),
        }
        for _ in range(n)
    ]
    return images, targets


def _block_input_shape(model, size=64):
    """Shape of the feature the backbone's block receives, found with a forward hook."""
    seen = []
    handle = model.backbone.block.register_forward_hook(
        lambda m, inp, out: seen.append(tuple(inp[0].shape))
    )
    try:
        with torch.no_grad():
            model.backbone(torch.randn(1, 3, size, size))
    finally:
        handle.remove()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    "backbone, level, channels, stride",
    [
        ("resnet50", "C3", 512, 8),
        ("resnet50", "C4", 1024, 16),
        ("resnet50", "C5", 2048, 32),
        ("resnet18", "C3", 128, 8),
        ("resnet18", "C4", 256, 16),
        ("resnet18", "C5", 512, 32),
        ("resnet34", "C3", 128, 8),
        ("resnet34", "C5", 512, 32),
    ],
)
def test_block_sees_the_level_channels(backbone, level, channels, stride):
    model = build_retinanet(backbone, block="se", insert_level=level, num_classes=3, **SMALL)
    assert isinstance(model.backbone, BackboneWithBlock) and isinstance(
        model.backbone, BackboneWithFPN
    )
    assert model.backbone.out_channels == 256
    assert level_channels(backbone, level) == channels
    assert _block_input_shape(model, size=64) == (1, channels, 64 // stride, 64 // stride)


def test_fpn_outputs_unchanged_in_shape():
    torch.manual_seed(0)
    base = retinanet_resnet18_fpn(num_classes=3, **SMALL)
    with_block = retinanet_resnet18_fpn(block="lgf", num_classes=3, **SMALL)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = base.backbone(x), with_block.backbone(x)
    assert list(a) == list(b) == ["0", "1", "2", "p6", "p7"]
    assert [t.shape for t in a.values()] == [t.shape for t in b.values()]


@pytest.mark.parametrize("block", ["lgf", "lgf_paper", "se", "cbam"])
def test_training_step_gives_finite_losses_and_block_gradients(block):
    torch.manual_seed(1)
    model = retinanet_resnet18_fpn(block=block, num_classes=3, **SMALL)
    model.train()
    images, targets = _images_and_targets()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.backbone.block.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("gate", ["sigmoid", "softmax", "sum"])
def test_lgf_gate_is_forwarded(gate):
    model = retinanet_resnet18_fpn(block="lgf", gate=gate, num_classes=3, **SMALL)
    assert isinstance(model.backbone.block, LGF) and model.backbone.block.gate_mode == gate


def test_training_step_under_bf16_autocast():
    torch.manual_seed(2)
    model = retinanet_resnet18_fpn(block="lgf", num_classes=3, **SMALL)
    images, targets = _images_and_targets(n=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert (
        model.backbone.block.gate.grad is not None
        and torch.isfinite(model.backbone.block.gate.grad).all()
    )


def test_eval_returns_detections():
    torch.manual_seed(3)
    model = retinanet_resnet18_fpn(
        block="lgf", num_classes=3, score_thresh=0.0, detections_per_img=20, **SMALL
    )
    model.eval()
    images, _ = _images_and_targets()
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, list) and len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        k = det["boxes"].shape[0]
        assert (
            0 < k <= 20
            and det["boxes"].shape == (k, 4)
            and det["scores"].shape == det["labels"].shape == (k,)
        )
        assert ((det["labels"] >= 0) & (det["labels"] < 3)).all()


# The Triton interpreter is too slow for a whole model on CPU; its parity is checked per block
# in test_blocks.py.
@pytest.mark.parametrize(
    "backend", ["auto"] + [b for b in ("cpp",) if b in lgf_ops.available_backends()]
)
def test_backends_give_the_same_model_outputs(backend):
    torch.manual_seed(4)
    tiny = dict(min_size=96, max_size=96)
    model = retinanet_resnet18_fpn(
        block="lgf", num_classes=3, block_kwargs={"backend": backend}, **tiny
    )
    ref = retinanet_resnet18_fpn(
        block="lgf", num_classes=3, block_kwargs={"backend": "reference"}, **tiny
    )
    with torch.no_grad():  # non-trivial gates, so the gate path is exercised
        model.backbone.block.gate.normal_(0, 0.5)
    ref.load_state_dict(model.state_dict())
    assert model.backbone.block.backend == backend and ref.backbone.block.backend == "reference"
    images, targets = _images_and_targets(size=96)
    la, lb = model(images, targets), ref(images, targets)
    for key in la:
        torch.testing.assert_close(la[key], lb[key], rtol=1e-4, atol=1e-5)
    ga = torch.autograd.grad(sum(la.values()), model.backbone.block.gate)[0]
    gb = torch.autograd.grad(sum(lb.values()), ref.backbone.block.gate)[0]
    torch.testing.assert_close(ga, gb, rtol=1e-3, atol=1e-5)
    model.eval(), ref.eval()
    with torch.no_grad():
        fa, fb = model.backbone(torch.stack(images)), ref.backbone(torch.stack(images))
    for key in fa:
        torch.testing.assert_close(fa[key], fb[key], rtol=1e-4, atol=1e-5)


def test_baseline_is_torchvision_and_keys_are_kept():
    ours = retinanet_resnet50_fpn(num_classes=5)
    theirs = torchvision.models.detection.retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=5
    )
    assert type(ours.backbone) is BackboneWithFPN
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == shapes
    with_lgf = retinanet_resnet50_fpn(block="lgf", num_classes=5)
    lgf_sd = with_lgf.state_dict()
    assert {k: v.shape for k, v in lgf_sd.items() if not k.startswith("backbone.block.")} == shapes


@pytest.mark.parametrize("block", ["lgf", "lgf_paper", "se", "cbam"])
def test_baseline_checkpoint_loads_with_only_block_keys_missing(block):
    torch.manual_seed(5)
    base = retinanet_resnet18_fpn(num_classes=3, **SMALL)
    model = retinanet_resnet18_fpn(block=block, insert_level="C4", num_classes=3, **SMALL)
    block_keys = {"backbone.block." + k for k in model.backbone.block.state_dict()}
    assert block_keys
    result = model.load_state_dict(base.state_dict(), strict=False)
    assert set(result.missing_keys) == block_keys and result.unexpected_keys == []
    for key, value in base.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    # the reverse direction: a block checkpoint into a baseline reports the block keys as unexpected
    back = base.load_state_dict(model.state_dict(), strict=False)
    assert back.missing_keys == [] and set(back.unexpected_keys) == block_keys


def test_callable_block_and_block_kwargs():
    model = retinanet_resnet18_fpn(
        block=lambda c, **kw: SE(c, **kw), block_kwargs={"reduction": 4}, num_classes=3
    )
    assert (
        isinstance(model.backbone.block, SE) and model.backbone.block.fc[0].out_channels == 128 // 4
    )
    model = build_retinanet(
        "resnet18", block="lgf", block_kwargs={"backend": "reference", "gn_groups": 8}
    )
    assert model.backbone.block.backend == "reference"
    assert model.backbone.block.global_branch[2].num_groups == 8


def test_builder_errors_are_clear():
    with pytest.raises(ValueError, match=r"block must be one of .*'lgf'.*'cbam'"):
        retinanet_resnet18_fpn(block="transformer")
    with pytest.raises(ValueError, match=r"insert_level must be one of \('C3', 'C4', 'C5'\)"):
        retinanet_resnet18_fpn(block="lgf", insert_level="C2")
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_retinanet("vgg16")
    with pytest.raises(ValueError, match="gate must be one of"):
        retinanet_resnet18_fpn(block="lgf", gate="tanh")
    with pytest.raises(ValueError, match="applies to block='lgf' only"):
        retinanet_resnet18_fpn(block="se", gate="sum")
    with pytest.raises(ValueError, match="builds no block"):
        retinanet_resnet18_fpn(block=None, block_kwargs={"reduction": 4})
    with pytest.raises(ValueError, match="resnet50 only"):
        retinanet_resnet18_fpn(weights="DEFAULT")
    with pytest.raises(ValueError, match="weights_backbone='NOPE'"):
        retinanet_resnet18_fpn(weights_backbone="NOPE")
    with pytest.raises(ValueError, match="weights='NOPE'"):
        retinanet_resnet50_fpn(weights="NOPE")
    with pytest.raises(ValueError, match="LGF: backend must be one of"):
        retinanet_resnet18_fpn(block="lgf", block_kwargs={"backend": "metal"})


def test_block_complexity():
    C, H, W = 64, 10, 8
    assert block_complexity(None, C, H, W) == (0, 0)
    params, flops = block_complexity("se", C, H, W)
    assert params == 2 * C * (C // 16) and flops == 2 * 2 * C * (
        C // 16
    )  # two 1x1 convs on a 1x1 map
    params, flops = block_complexity("lgf", C, H, W, backend="reference")
    # the reference path is counted through its depthwise conv (2*9 per element) + the global
    # 1x1 conv
    assert params == C * C + 19 * C and flops == 18 * C * H * W + 2 * C * C
    params, flops = block_complexity("cbam", C, H, W)
    assert params == 2 * C * (C // 16) + 98
    assert (
        flops == 2 * (2 * 2 * C * (C // 16)) + 2 * 98 * H * W
    )  # MLP on avg and max, 7x7 conv 2 -> 1
