"""Tests of the comparison designs (lgf/peers: GLMD, SIE-FPN, ASFF), their builder integration and
complexity, and the feature-enhancement regulariser (lgf/regularizers.py)."""

import math
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

from lgf.counting import block_complexity, model_complexity
from lgf.models import BackboneWithBlock, build_retinanet
from lgf.peers import ASFF, ASFFPN, GLMD, NECKS, SIEFPN, AxialAttention, NonLocal2d, make_neck
from lgf.peers.asff import resize_to
from lgf.peers.attention import multi_head_attention
from lgf.regularizers import feature_enhancement_loss, find_resnet_body

SMALL = dict(min_size=128, max_size=128)
R18_CHANNELS = [128, 256, 512]  # resnet18 C3, C4, C5


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


def _pyramid_inputs(sizes=(13, 7, 4), channels=R18_CHANNELS, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict(
        (str(i), torch.randn(n, c, s, s, generator=gen))
        for i, (c, s) in enumerate(zip(channels, sizes))
    )


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# ---- attention helpers ---------------------------------------------------------------------------


def test_multi_head_attention_matches_sdpa():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, L, 24, generator=gen, dtype=torch.float64) for L in (10, 6, 6))
    ours = multi_head_attention(q, k, v, num_heads=4)
    heads = [t.reshape(3, -1, 4, 6).transpose(1, 2) for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*heads).transpose(1, 2).reshape(3, 10, 24)
    torch.testing.assert_close(ours, ref)


def test_axial_attention_reaches_the_whole_map_in_two_passes():
    torch.manual_seed(0)
    attn = AxialAttention(16, num_heads=2).eval()
    x = torch.randn(1, 16, 6, 5)
    x2 = x.clone()
    x2[..., 0, 0] += torch.randn(16)  # not a constant: LayerNorm over channels would remove it
    with torch.no_grad():
        y, y2 = attn(x), attn(x2)
        row_only = attn.row(x.permute(0, 2, 3, 1).reshape(6, 5, 16))
        row_only2 = attn.row(x2.permute(0, 2, 3, 1).reshape(6, 5, 16))
    assert y.shape == x.shape
    assert (y2[..., 5, 4] - y[..., 5, 4]).abs().max() > 1e-4  # the far corner sees the change
    torch.testing.assert_close(
        row_only2[1:], row_only[1:], rtol=0, atol=0
    )  # a row pass alone does not
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        AxialAttention(10, num_heads=3)


# ---- GLMD ----------------------------------------------------------------------------------------


def _glmd_params(C, d):
    local = (9 * C + C) + 2 * C * (C // 16) + (C * d + d) + 2 * 49 + (C + d) * d + 2 * d
    axial = 2 * (2 * d + d * 3 * d + 3 * d + d * d + d)
    glob = (C * d + d) + axial + 2 * d
    mutual = 2 * (9 * d * d + d) + (d * C + C)
    return local + glob + mutual


@pytest.mark.parametrize("channels, reduction", [(64, 4), (48, 2), (32, 1)])
def test_glmd_shape_and_params(channels, reduction):
    torch.manual_seed(0)
    block = GLMD(channels, reduction=reduction)
    d = channels // reduction
    assert block.width == d and d % block.num_heads == 0
    assert _n_params(block) == _glmd_params(channels, d)
    x = torch.randn(2, channels, 9, 7)
    y = block(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.allclose(y, x)  # the block does something from the start
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_glmd_default_widths_at_c3_of_resnet50():
    block = GLMD(512)
    assert block.width == 128 and block.num_heads == 4
    assert _n_params(block) == _glmd_params(512, 128)


def test_glmd_mutual_fusion_follows_the_formula():
    torch.manual_seed(1)
    block = GLMD(32).eval()
    x = torch.randn(1, 32, 6, 6)
    with torch.no_grad():
        L, G = block.local_branch(x), block.global_branch(x)
        expected = x + block.out_proj(
            block.mutual_g(G * torch.sigmoid(L)) + block.mutual_l(L * torch.sigmoid(G))
        )
        torch.testing.assert_close(block(x), expected)


def test_glmd_under_bf16_autocast():
    torch.manual_seed(2)
    block = GLMD(32)
    x = torch.randn(1, 32, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(x.bfloat16())
    assert y.shape == x.shape and torch.isfinite(y.float()).all()


def test_glmd_bad_arguments():
    with pytest.raises(ValueError, match="GLMD: channels must be a positive int"):
        GLMD(0)
    with pytest.raises(ValueError, match="GLMD: reduction must be a positive int"):
        GLMD(64, reduction=0)
    with pytest.raises(ValueError, match=r"GLMD: expected input \(N, 64, H, W\)"):
        GLMD(64)(torch.randn(1, 32, 4, 4))


# ---- SIE-FPN -------------------------------------------------------------------------------------


def test_non_local_starts_as_identity_and_then_attends_globally():
    torch.manual_seed(0)
    block = NonLocal2d(16)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(block(x), x)
    for size in [(1, 1), (2, 3)]:  # odd and 1x1 maps
        t = torch.randn(1, 16, *size)
        assert torch.equal(block(t), t)
    nn.init.normal_(block.out.weight, std=0.1)
    x2 = x.clone()
    x2[:, :, 4, 6] += 2.0
    with torch.no_grad():
        y, y2 = block(x), block(x2)
    assert not torch.equal(y, x)
    assert (y2[:, :, 0, 0] - y[:, :, 0, 0]).abs().max() > 1e-5  # a far pixel changes the corner


def test_sie_fpn_attention_branch_starts_as_identity():
    """At initialisation each GAU adds exactly zero: the neck equals itself with GAU removed."""
    torch.manual_seed(0)
    neck = SIEFPN(R18_CHANNELS, 32, extra_blocks=LastLevelP6P7(32, 32))
    feats = _pyramid_inputs()
    with torch.no_grad():
        out = neck(feats)
        neck.gau = nn.ModuleList(nn.Identity() for _ in neck.gau)
        without = neck(feats)
    assert list(out) == list(without) == ["0", "1", "2", "p6", "p7"]
    for key in out:
        assert torch.equal(out[key], without[key]), key


def test_sie_fpn_matches_the_fpn_interface():
    torch.manual_seed(0)
    feats = _pyramid_inputs()
    fpn = FeaturePyramidNetwork(R18_CHANNELS, 32, extra_blocks=LastLevelP6P7(32, 32))
    neck = SIEFPN(R18_CHANNELS, 32, extra_blocks=LastLevelP6P7(32, 32))
    with torch.no_grad():
        a, b = fpn(feats), neck(feats)
    assert list(a) == list(b)
    assert [t.shape for t in a.values()] == [t.shape for t in b.values()]
    # same FPN modules under the same names, plus the enhancement modules
    fpn_keys, neck_keys = set(fpn.state_dict()), set(neck.state_dict())
    assert fpn_keys < neck_keys
    assert {k.split(".")[0] for k in neck_keys - fpn_keys} == {"lfe", "mic", "gau"}
    # all three LFE branches start with weight 1/3
    for lfe in neck.lfe:
        torch.testing.assert_close(lfe.branch_weights(), torch.full((3,), 1 / 3))
    # the multi-information compensation yields out_channels from the raw C_i
    assert neck.mic[2](feats["2"]).shape == (2, 32, 4, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        SIEFPN(R18_CHANNELS, 30)


# ---- ASFF ----------------------------------------------------------------------------------------


def test_resize_to():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(resize_to(x, (4, 4)), x)
    assert torch.equal(
        resize_to(x, (2, 2)), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]])
    )  # 2x2 max
    up = resize_to(x, (8, 8))
    assert up.shape == (1, 1, 8, 8) and torch.equal(up[..., ::2, ::2], x)
    assert resize_to(torch.randn(1, 2, 13, 13), (4, 4)).shape == (1, 2, 4, 4)


def test_asff_weights_sum_to_one_per_pixel():
    torch.manual_seed(0)
    asff = ASFF(16, num_levels=3, compress=4)
    for fusion in asff.fusions:  # non-trivial weights
        nn.init.normal_(fusion.logits.weight, std=1.0)
    feats = [torch.randn(2, 16, s, s) for s in (13, 7, 4)]
    weights = asff.fusion_weights(feats)
    for w, f in zip(weights, feats):
        assert w.shape == (2, 3, *f.shape[-2:])
        torch.testing.assert_close(w.sum(1), torch.ones(2, *f.shape[-2:]))
        assert (w > 0).all() and (w < 1).all() and w.std() > 1e-3
    outs = asff(feats)
    assert [o.shape for o in outs] == [f.shape for f in feats]


def test_asff_is_the_weighted_sum_of_resized_levels():
    torch.manual_seed(0)
    asff = ASFF(8, num_levels=3, compress=4)
    feats = [torch.randn(1, 8, s, s) for s in (8, 4, 2)]
    for source in range(3):
        for fusion in asff.fusions:  # all weight on `source`
            nn.init.zeros_(fusion.logits.weight)
            fusion.logits.bias.data = torch.tensor([0.0, 0.0, 0.0]).index_fill(
                0, torch.tensor(source), 60.0
            )
        with torch.no_grad():
            outs = asff(feats)
        for level, (fusion, out) in enumerate(zip(asff.fusions, outs)):
            expected = fusion.out(resize_to(feats[source], feats[level].shape[-2:]))
            torch.testing.assert_close(out, expected)


def test_asff_fpn_replaces_p3_to_p5_and_keeps_p6_p7():
    torch.manual_seed(0)
    feats = _pyramid_inputs()
    neck = ASFFPN(R18_CHANNELS, 32, extra_blocks=LastLevelP6P7(32, 32))
    fpn = FeaturePyramidNetwork(R18_CHANNELS, 32, extra_blocks=LastLevelP6P7(32, 32))
    result = fpn.load_state_dict(neck.state_dict(), strict=False)
    assert result.missing_keys == [] and all(k.startswith("asff.") for k in result.unexpected_keys)
    with torch.no_grad():
        a, b = fpn(feats), neck(feats)
    assert list(a) == list(b) == ["0", "1", "2", "p6", "p7"]
    for key in ("0", "1", "2"):
        assert a[key].shape == b[key].shape and not torch.allclose(a[key], b[key])
    for key in ("p6", "p7"):
        assert torch.equal(a[key], b[key])


# ---- builder -------------------------------------------------------------------------------------

MODES = {
    "glmd": {"block": "glmd"},
    "sie_fpn": {"neck": "sie_fpn"},
    "asff": {"neck": "asff"},
}  # -> builder kwargs


def _new_submodules(model, mode):
    """The modules a mode adds to the baseline RetinaNet, by name."""
    if mode == "glmd":
        return {"block": model.backbone.block}
    if mode == "asff":
        return {"asff": model.backbone.fpn.asff}
    fpn = model.backbone.fpn
    return {"lfe": fpn.lfe, "mic": fpn.mic, "gau": fpn.gau}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_mode_trains_and_evaluates(mode):
    torch.manual_seed(3)
    model = build_retinanet(
        "resnet18", num_classes=3, score_thresh=0.0, detections_per_img=10, **MODES[mode], **SMALL
    )
    before = {
        name: [p.detach().clone() for p in part.parameters()]
        for name, part in _new_submodules(model, mode).items()
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    images, targets = _images_and_targets(n=1)
    model.train()
    for _ in range(2):
        losses = model(images, targets)
        assert set(losses) == {"classification", "bbox_regression"}
        assert all(torch.isfinite(v) for v in losses.values())
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    # after the first step (which gives the zero-initialised non-local outputs a value),
    # gradients reach every new part
    for name, part in _new_submodules(model, mode).items():
        grads = [p.grad for p in part.parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
        assert any(not torch.equal(p, b) for p, b in zip(part.parameters(), before[name])), name
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 1
    for det in out:
        k = det["boxes"].shape[0]
        assert 0 < k <= 10 and det["scores"].shape == det["labels"].shape == (k,)
        assert torch.isfinite(det["boxes"]).all()


@pytest.mark.parametrize("mode", sorted(MODES))
def test_baseline_checkpoint_loads_with_only_new_keys_missing(mode):
    torch.manual_seed(5)
    base = build_retinanet("resnet18", num_classes=3, **SMALL)
    model = build_retinanet("resnet18", num_classes=3, **MODES[mode], **SMALL)
    base_sd, model_sd = base.state_dict(), model.state_dict()
    assert {k: v.shape for k, v in model_sd.items() if k in base_sd} == {
        k: v.shape for k, v in base_sd.items()
    }
    new_keys = set(model_sd) - set(base_sd)
    prefix = {"glmd": "backbone.block.", "sie_fpn": "backbone.fpn.", "asff": "backbone.fpn.asff."}[
        mode
    ]
    assert new_keys and all(k.startswith(prefix) for k in new_keys)
    result = model.load_state_dict(base_sd, strict=False)
    assert set(result.missing_keys) == new_keys and result.unexpected_keys == []
    for key, value in base_sd.items():
        assert torch.equal(model.state_dict()[key], value), key


def test_neck_receives_the_fpn_weights_at_build():
    """Pretrained FPN weights (loaded before the neck is installed) are carried into the neck."""
    from lgf.models import _install_neck

    torch.manual_seed(6)
    model = build_retinanet("resnet18", num_classes=3, **SMALL)
    old = {k: v.clone() for k, v in model.backbone.fpn.state_dict().items()}
    _install_neck(model.backbone, make_neck("sie_fpn", R18_CHANNELS, 256, LastLevelP6P7(256, 256)))
    assert isinstance(model.backbone.fpn, SIEFPN)
    new = model.backbone.fpn.state_dict()
    for key, value in old.items():
        assert torch.equal(new[key], value), key


def test_block_and_neck_combine():
    torch.manual_seed(7)
    model = build_retinanet(
        "resnet18", block="lgf", neck="asff", neck_kwargs={"compress": 8}, num_classes=3, **SMALL
    )
    assert isinstance(model.backbone, BackboneWithBlock) and isinstance(model.backbone.fpn, ASFFPN)
    assert model.backbone.fpn.asff.fusions[0].compress[0][0].out_channels == 8
    model.eval()
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, 64, 64))
    assert list(feats) == ["0", "1", "2", "p6", "p7"]
    model = build_retinanet(
        "resnet18", block="glmd", insert_level="C4", block_kwargs={"reduction": 8}, num_classes=3
    )
    assert isinstance(model.backbone.block, GLMD) and model.backbone.block.width == 256 // 8


def test_builder_errors_for_unknown_names():
    with pytest.raises(ValueError, match=r"neck must be one of \('fpn', 'sie_fpn', 'asff'\)"):
        build_retinanet("resnet18", neck="bifpn")
    with pytest.raises(ValueError, match=r"block must be one of .*'glmd'"):
        build_retinanet("resnet18", block="glmd2")
    with pytest.raises(ValueError, match="plain FPN"):
        build_retinanet("resnet18", neck="fpn", neck_kwargs={"compress": 8})
    with pytest.raises(ValueError, match="applies to block='lgf' only"):
        build_retinanet("resnet18", block="glmd", gate="sum")
    assert NECKS == ("fpn", "sie_fpn", "asff")
    assert (
        make_neck(None, R18_CHANNELS, 256) is None and make_neck("FPN", R18_CHANNELS, 256) is None
    )


# ---- complexity ----------------------------------------------------------------------------------


def test_glmd_block_complexity_counts_every_conv_and_matmul():
    C, H, W = 64, 10, 8
    d, P = 16, H * W
    params, flops = block_complexity("glmd", C, H, W)
    assert params == _glmd_params(C, d)
    local = (
        2 * 9 * C * P + 2 * 2 * C * (C // 16) + 2 * C * d * P + 2 * 2 * 49 * P + 2 * (C + d) * d * P
    )
    # per axial pass: qkv and output projections, q k^T and weights @ v over the row (W) /
    # column (H)
    axial = 2 * (3 * d * d + d * d) * P * 2 + 2 * 2 * P * W * d + 2 * 2 * P * H * d
    glob = 2 * C * d * P + axial
    mutual = 2 * 2 * 9 * d * d * P + 2 * d * C * P
    assert flops == local + glob + mutual


def test_model_complexity_parts():
    torch.manual_seed(8)
    base = build_retinanet("resnet18", num_classes=3)
    reports = {"base": model_complexity(base, 64)}
    for mode, kwargs in MODES.items():
        reports[mode] = model_complexity(build_retinanet("resnet18", num_classes=3, **kwargs), 64)
    for name, rep in reports.items():
        assert rep["flops"] == sum(p["flops"] for p in rep["parts"].values()), name
        assert rep["params"] == sum(p["params"] for p in rep["parts"].values()), name
        assert rep["parts"]["body"] == reports["base"]["parts"]["body"]
        assert rep["parts"]["head"] == reports["base"]["parts"]["head"]
    assert set(reports["glmd"]["parts"]) == {"body", "block", "fpn", "head"}
    assert reports["glmd"]["parts"]["block"] == dict(
        zip(("params", "flops"), block_complexity("glmd", 128, 8, 8))
    )
    for mode in ("sie_fpn", "asff"):
        assert set(reports[mode]["parts"]) == {"body", "fpn", "head"}
        assert reports[mode]["parts"]["fpn"]["flops"] > reports["base"]["parts"]["fpn"]["flops"]
        assert reports[mode]["parts"]["fpn"]["params"] > reports["base"]["parts"]["fpn"]["params"]
    with pytest.raises(ValueError, match="img_size"):
        model_complexity(base, 16)
    with pytest.raises(TypeError, match="RetinaNet"):
        model_complexity(nn.Conv2d(3, 3, 1), 64)


# ---- feature-enhancement regulariser -------------------------------------------------------------


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3)
        self.layer2 = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 1, bias=False))
        self.layer4 = nn.Sequential(nn.Conv2d(2, 2, 3), nn.BatchNorm2d(2))


def _hand_norm(values):
    return math.sqrt(sum(v * v for v in values))


def _hand_var(values):
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def test_feature_enhancement_loss_matches_hand_computation_and_has_gradients():
    torch.manual_seed(0)
    net = _TinyNet()
    lam4, lam2 = 0.3, 2.0
    value = feature_enhancement_loss(net, lambda4=lam4, lambda2=lam2)
    deep = [net.layer4[0].weight.flatten().tolist()]
    shallow = [net.layer2[0].weight.flatten().tolist(), net.layer2[2].weight.flatten().tolist()]
    expected = lam4 * sum(_hand_norm(w) for w in deep) - lam2 * sum(_hand_var(w) for w in shallow)
    assert value.dim() == 0 and value.requires_grad
    assert abs(value.item() - expected) < 1e-5 * max(1.0, abs(expected))
    value.backward()
    w4 = net.layer4[0].weight
    torch.testing.assert_close(w4.grad, lam4 * w4 / w4.norm(), rtol=1e-5, atol=1e-7)
    for conv in (net.layer2[0], net.layer2[2]):
        w = conv.weight
        torch.testing.assert_close(
            w.grad, -lam2 * 2 * (w - w.mean()) / (w.numel() - 1), rtol=1e-5, atol=1e-7
        )
        assert w.grad.abs().sum() > 0
    assert net.stem.weight.grad is None and net.layer2[0].bias.grad is None


def test_feature_enhancement_loss_on_retinanet_and_wrappers():
    torch.manual_seed(1)
    model = build_retinanet("resnet18", block="glmd", num_classes=3, **SMALL)
    body = model.backbone.body
    assert find_resnet_body(model) is body

    class Wrapper(nn.Module):  # like DistributedDataParallel: the model is `.module`
        def __init__(self, module):
            super().__init__()
            self.module = module

    value = feature_enhancement_loss(Wrapper(model))
    deep = [m.weight for m in body.layer4.modules() if isinstance(m, nn.Conv2d)]
    shallow = [m.weight for m in body.layer2.modules() if isinstance(m, nn.Conv2d)]
    assert len(deep) == 5 and len(shallow) == 5  # resnet18: 2 blocks x 2 convs + downsample
    expected = 1e-5 * sum(w.norm() for w in deep) - sum(w.var() for w in shallow)
    torch.testing.assert_close(value, expected)
    # added to the detection loss, gradients flow into layer2 and layer4
    images, targets = _images_and_targets(n=1)
    losses = model(images, targets)
    total = sum(losses.values()) + feature_enhancement_loss(model, lambda4=1e-2, lambda2=1.0)
    total.backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in deep + shallow)


def test_feature_enhancement_loss_errors():
    with pytest.raises(ValueError, match=r"no ResNet stages \['layer2', 'layer4'\]"):
        feature_enhancement_loss(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="lambda4 must be a finite number >= 0"):
        feature_enhancement_loss(_TinyNet(), lambda4=-1.0)
    with pytest.raises(ValueError, match="lambda2 must be a finite number >= 0"):
        feature_enhancement_loss(_TinyNet(), lambda2=float("nan"))
    with pytest.raises(TypeError, match="nn.Module"):
        feature_enhancement_loss("resnet50")
