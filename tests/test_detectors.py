"""The block in every torchvision ResNet-FPN detector (lgf.insert, lgf.detectors, lgf.heads):
models built by torchvision's own builders, weights without downloads, class-head replacement,
and the rebuild of pretrained structures from checkpoints."""

import pytest
import torch
import torchvision.models.detection as tvd
from torchvision.models import ResNet50_Weights
from torchvision.models._api import WeightsEnum
from torchvision.ops.misc import FrozenBatchNorm2d

from lgf import LGF, SE, BackboneWithBlock, insert_block
from lgf.detectors import DETECTORS, build_detector, match_pretrained_structure
from lgf.heads import num_classes_of, replace_class_head

TV_BUILDERS = {
    "fasterrcnn_resnet50_fpn": tvd.fasterrcnn_resnet50_fpn,
    "fasterrcnn_resnet50_fpn_v2": tvd.fasterrcnn_resnet50_fpn_v2,
    "fcos_resnet50_fpn": tvd.fcos_resnet50_fpn,
    "retinanet_resnet50_fpn": tvd.retinanet_resnet50_fpn,
    "retinanet_resnet50_fpn_v2": tvd.retinanet_resnet50_fpn_v2,
    "maskrcnn_resnet50_fpn": tvd.maskrcnn_resnet50_fpn,
}
SMALL = dict(min_size=64, max_size=64)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tv(name, **kw):
    return TV_BUILDERS[name](weights=None, weights_backbone=None, num_classes=3, **SMALL, **kw)


@pytest.mark.parametrize("name", list(TV_BUILDERS))
def test_insert_block_in_every_torchvision_detector(name):
    torch.manual_seed(0)
    model = _tv(name)
    keys = {k: v.shape for k, v in model.state_dict().items()}
    out_channels = model.backbone.out_channels
    assert insert_block(model, "C3", "lgf") is model
    assert isinstance(model.backbone, BackboneWithBlock)
    block = model.backbone.block
    assert isinstance(block, LGF) and block.channels == 512  # ResNet-50 layer2
    assert model.backbone.out_channels == out_channels
    new = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v for k, v in new.items() if not k.startswith("backbone.block.")} == keys
    seen = []
    block.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 80)])
    assert seen and seen[0][1] == 512 and set(out[0]) >= {"boxes", "scores", "labels"}


def test_insert_block_levels_modules_and_errors():
    model = insert_block(_tv("fcos_resnet50_fpn"), "c4", "se", reduction=8)
    assert model.backbone.insert_level == "C4" and model.backbone.block.fc[0].in_channels == 1024
    with pytest.raises(ValueError, match="already has a block"):
        insert_block(model, "C3", "lgf")
    plain = _tv("retinanet_resnet50_fpn")
    assert insert_block(plain, "C3", None) is plain and not hasattr(plain.backbone, "block")
    mine = SE(2048)
    assert insert_block(plain, "C5", mine).backbone.block is mine
    with pytest.raises(TypeError, match="BackboneWithFPN"):
        insert_block(torch.nn.Linear(2, 2), "C3", "lgf")
    with pytest.raises(ValueError, match="insert_level must be one of"):
        insert_block(_tv("retinanet_resnet50_fpn"), "C2", "lgf")


@pytest.mark.parametrize("detector", [d for d in DETECTORS if d != "retinanet"])
def test_build_detector_uses_torchvision_builders(detector):
    model = build_detector(detector, "resnet50", block="lgf", num_classes=4, **SMALL)
    reference = DETECTORS[detector].builder(weights=None, weights_backbone=None, num_classes=4)
    assert type(model) is type(reference)
    ours = {k: v.shape for k, v in model.state_dict().items() if "backbone.block." not in k}
    assert ours == {k: v.shape for k, v in reference.state_dict().items()}
    assert num_classes_of(model) == 4


def test_build_detector_errors():
    with pytest.raises(ValueError, match="backbone must be 'resnet50'"):
        build_detector("fasterrcnn", "resnet18")
    with pytest.raises(ValueError, match="necks replace RetinaNet's FPN only"):
        build_detector("fcos", "resnet50", neck="asff")
    with pytest.raises(ValueError, match="detector must be one of"):
        build_detector("yolo")
    with pytest.raises(ValueError, match="block must be one of"):
        build_detector("fcos", "resnet50", block="transformer")
    with pytest.raises(ValueError, match="weights='NOPE' is not a valid"):
        build_detector("fasterrcnn", "resnet50", weights="NOPE")


@pytest.mark.parametrize(
    "name", ["retinanet_resnet50_fpn", "fcos_resnet50_fpn", "maskrcnn_resnet50_fpn"]
)
def test_replace_class_head_keeps_the_rest(name):
    model = _tv(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_class_head(model, 7)
    after = model.state_dict()
    assert num_classes_of(model) == 7
    changed = {k for k in after if k not in before or after[k].shape != before[k].shape}
    changed |= {k for k in after if k in before and not torch.equal(after[k], before[k])}
    prefixes = {
        "retinanet_resnet50_fpn": ("head.classification_head.cls_logits.",),
        "fcos_resnet50_fpn": ("head.classification_head.cls_logits.",),
        "maskrcnn_resnet50_fpn": ("roi_heads.box_predictor.", "roi_heads.mask_predictor."),
    }[name]
    assert changed and all(k.startswith(prefixes) for k in changed)
    if name != "maskrcnn_resnet50_fpn":
        bias = model.head.classification_head.cls_logits.bias
        torch.testing.assert_close(bias, torch.full_like(bias, -4.59511985013459))
    model.eval()
    with torch.no_grad():
        assert model([torch.rand(3, 64, 64)])[0]["scores"].numel() >= 0


def _fake_state_dict(builder_name, seed=3, **kw):
    """What a downloaded state dict would hold: the builder's own tensors, filled randomly."""
    torch.manual_seed(seed)
    model = TV_BUILDERS[builder_name](weights=None, weights_backbone=None, num_classes=91, **kw)
    fake = {}
    for key, value in model.state_dict().items():
        if key.endswith("running_var"):
            value = torch.rand_like(value) + 0.5
        elif value.is_floating_point():
            value = torch.randn_like(value) * 0.05
        fake[key] = value
    return fake


def test_weights_load_without_download_and_replace_the_class_head(monkeypatch):
    fake = _fake_state_dict("fasterrcnn_resnet50_fpn")
    calls = []

    def get_state_dict(self, *args, **kwargs):
        calls.append(self)
        frozen = {k: v for k, v in fake.items() if not k.endswith("num_batches_tracked")}
        return {k: v for k, v in frozen.items()}

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    model = build_detector("fasterrcnn", "resnet50", block="lgf", weights="COCO_V1",
                           num_classes=4, **SMALL)  # fmt: skip
    assert [c.name for c in calls] == ["COCO_V1"]
    state = model.state_dict()
    for key in ("backbone.body.layer1.0.conv1.weight", "rpn.head.conv.0.0.weight"):
        torch.testing.assert_close(state[key], fake[key])
    assert state["roi_heads.box_predictor.cls_score.weight"].shape == (4, 1024)
    bn = model.backbone.body.layer1[0].bn1
    assert isinstance(bn, FrozenBatchNorm2d) and bn.eps == 0.0  # torchvision's COCO_V1 rule
    assert not model.backbone.body.conv1.weight.requires_grad  # 3 trainable layers by default


def test_match_pretrained_structure_rebuilds_a_checkpoint_exactly(monkeypatch):
    """A model trained from pretrained weights (frozen batch norms, eps 0) and a rebuild without
    downloads compute the same after loading the state dict."""
    fake = _fake_state_dict("retinanet_resnet50_fpn")
    monkeypatch.setattr(
        WeightsEnum,
        "get_state_dict",
        lambda self, *a, **k: {k2: v for k2, v in fake.items() if "num_batches" not in k2},
    )
    trained = build_detector("retinanet", "resnet50", block="lgf", weights="COCO_V1",
                             num_classes=3, **SMALL)  # fmt: skip
    rebuilt = build_detector("retinanet", "resnet50", block="lgf", num_classes=3, **SMALL)
    match_pretrained_structure(rebuilt, "retinanet", "COCO_V1", None)
    rebuilt.load_state_dict(trained.state_dict())  # strict: the same modules
    trained.eval(), rebuilt.eval()
    x = [torch.rand(3, 64, 64)]
    with torch.no_grad():
        torch.testing.assert_close(trained.backbone(x[0][None]), rebuilt.backbone(x[0][None]))
        torch.testing.assert_close(trained(x)[0]["scores"], rebuilt(x)[0]["scores"])
    backbone_only = build_detector("fcos", "resnet50", num_classes=3, **SMALL)
    match_pretrained_structure(backbone_only, "fcos", None, ResNet50_Weights.IMAGENET1K_V1)
    assert isinstance(backbone_only.backbone.body.bn1, FrozenBatchNorm2d)
    v2 = build_detector("retinanet_v2", "resnet50", num_classes=3, **SMALL)
    match_pretrained_structure(v2, "retinanet_v2", "COCO_V1", None)
    assert isinstance(v2.backbone.body.bn1, torch.nn.BatchNorm2d)  # v2 builders keep BN
