"""Export of the block and of an LGF RetinaNet: torch.export with the op decomposed into ATen
ops, TorchScript (script and trace) and ONNX checked with onnxruntime on CPU (docs/export.md).

Baseline measured with this torch (2.14): torchvision's own RetinaNet scripts; torch.jit.trace
of the detector fails (it returns a list of dicts) for torchvision's and ours alike; the
torch.export-based ONNX exporter fails on its post-processing (data-dependent detection counts),
and the TorchScript-based one (dynamo=False) exports the whole detector.
"""

import io
import warnings

import pytest
import torch
from op_utils import triton_runs_cpu_tensors

import lgf
import lgf_ops

GATES = ("sigmoid", "softmax", "sum")


def make_block(gate: str = "sigmoid", channels: int = 64, **kwargs) -> lgf.LGF:
    """An LGF block in eval mode with random (not initial) gate and gamma values."""
    torch.manual_seed(0)
    block = lgf.LGF(channels, gate=gate, **kwargs).eval()
    with torch.no_grad():
        if block.gate is not None:
            block.gate.normal_()
        block.gamma.normal_()
    return block


def make_detector(**kwargs) -> torch.nn.Module:
    """A small LGF RetinaNet (resnet18, random weights) that keeps every detection."""
    torch.manual_seed(0)
    return lgf.build_retinanet(
        "resnet18", block="lgf", num_classes=3, score_thresh=0.0, detections_per_img=40, **kwargs
    ).eval()


def call_targets(graph: torch.fx.Graph) -> list[str]:
    return [str(n.target) for n in graph.nodes if n.op == "call_function"]


def export_backends() -> list[str]:
    return ["auto"] + (["triton"] if triton_runs_cpu_tensors() else [])


@pytest.mark.parametrize("backend", export_backends())
def test_decomposed_export_holds_only_aten_ops(backend):
    block = make_block(channels=16, backend=backend)
    x = torch.randn(2, 16, 9, 11)
    exported = torch.export.export(block, (x,))
    assert any(t.startswith("lgf") for t in call_targets(exported.graph)), "op not exported"
    decomposed = exported.run_decompositions(lgf_ops.export_decompositions())
    targets = call_targets(decomposed.graph)
    assert not [t for t in targets if t.startswith("lgf")], targets
    assert "aten.convolution.default" in targets
    with torch.no_grad():
        torch.testing.assert_close(decomposed.module()(x), block(x), rtol=1e-5, atol=1e-5)


def test_plain_run_decompositions_keeps_the_op():
    """torch's default table has no entry for custom ops with their own kernels (docs/export.md):
    the op stays, for runtimes that load lgf_ops."""
    x = torch.randn(1, 16, 5, 6)
    exported = torch.export.export(make_block(channels=16), (x,)).run_decompositions()
    assert "lgf.fused_forward.default" in call_targets(exported.graph)


def runs_the_kernel(module: torch.nn.Module, x: torch.Tensor) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with torch.no_grad():
            module(x)
    return any(event.name == "lgf::fused_forward" for event in prof.events())


def script_roundtrip(module: torch.nn.Module) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.14
        scripted = torch.jit.script(module)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        buffer.seek(0)
        return torch.jit.load(buffer)


@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_script_block(gate, backend):
    block = make_block(gate, backend=backend)
    scripted = script_roundtrip(block)
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), block(x), rtol=1e-5, atol=1e-5)
    kernel = backend == "auto" and "cpp" in lgf_ops.available_backends()
    assert runs_the_kernel(scripted, x) is kernel
    with pytest.raises(
        Exception, match=r"LGF: expected input \(N, 64, H, W\), got \(2, 3, 9, 11\)"
    ):
        scripted(torch.randn(2, 3, 9, 11))


def test_script_block_trains():
    block = make_block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in torch 2.14
        scripted = torch.jit.script(block)
    x = torch.randn(2, 64, 6, 7)
    scripted(x).square().sum().backward()
    grads = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    block(x).square().sum().backward()
    for got, want in zip(grads, [p.grad for p in block.parameters()]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_trace_block():
    block = make_block()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the input checks' shape comparisons (TracerWarning)
        traced = torch.jit.trace(block, (torch.randn(2, 64, 9, 11),))
    x = torch.randn(1, 64, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), block(x), rtol=1e-5, atol=1e-5)


def test_script_lgf_retinanet():
    model = make_detector()
    images = [torch.rand(3, 200, 240), torch.rand(3, 180, 256)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "RetinaNet always returns a (Losses, Detections) tuple"
        scripted = script_roundtrip(model)
        with torch.no_grad():
            _, got = scripted(images)
    with torch.no_grad():
        want = model(images)
    assert len(got) == 2 and len(got[0]["boxes"]) == 40
    for g, w in zip(got, want):
        for key in ("boxes", "scores", "labels"):
            torch.testing.assert_close(g[key], w[key])


class DetectionsAsTuple(torch.nn.Module):
    """One image in, (boxes, scores, labels) out: what torch.jit.trace and ONNX can carry."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model([image])[0]
        return out["boxes"], out["scores"], out["labels"]


def test_trace_lgf_retinanet():
    wrapped = DetectionsAsTuple(make_detector()).eval()
    image = torch.rand(3, 200, 240)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapped, (image,), check_trace=False)
        for got, want in zip(traced(image), wrapped(image)):
            torch.testing.assert_close(got, want)


def onnx_session(path: str):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("gate", GATES)
def test_onnx_block_matches_onnxruntime(gate, tmp_path):
    pytest.importorskip("onnxscript")
    block = make_block(gate)
    x = torch.randn(2, 64, 20, 24)
    program = torch.onnx.export(block, (x,), dynamo=True, verbose=False)
    ops = {node.op_type for node in program.model_proto.graph.node}
    assert "Conv" in ops and not [op for op in ops if "lgf" in op.lower()], ops
    program.save(str(tmp_path / "block.onnx"))
    session = onnx_session(str(tmp_path / "block.onnx"))
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), block(x), rtol=1e-5, atol=1e-5)


class HeadOutputs(torch.nn.Module):
    """The detector's network without pre- and post-processing: a normalised, padded batch in,
    the head's class logits and box regressions (per anchor) out."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model.head(list(self.model.backbone(images).values()))
        return out["cls_logits"], out["bbox_regression"]


def test_onnx_lgf_retinanet_network_with_the_torch_export_exporter(tmp_path):
    pytest.importorskip("onnxscript")
    net = HeadOutputs(make_detector()).eval()
    images = torch.rand(2, 3, 192, 256)
    program = torch.onnx.export(net, (images,), dynamo=True, verbose=False)
    program.save(str(tmp_path / "net.onnx"))
    session = onnx_session(str(tmp_path / "net.onnx"))
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    with torch.no_grad():
        want = net(images)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(g), w, rtol=1e-4, atol=1e-4)


def test_onnx_whole_lgf_retinanet_with_the_torchscript_exporter(tmp_path):
    """dynamo=False exports pre-processing, network and post-processing (NMS included); the
    detections must be the model's: every ONNX detection is one of the model's with the same
    label and score and the same box (order may differ among equal scores)."""
    pytest.importorskip("onnx")
    model = make_detector()
    image = torch.rand(3, 200, 240)
    path = str(tmp_path / "retinanet.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(
            DetectionsAsTuple(model).eval(), (image,), path, dynamo=False, opset_version=17
        )
    session = onnx_session(path)
    boxes, scores, labels = (
        torch.from_numpy(a)
        for a in session.run(None, {session.get_inputs()[0].name: image.numpy()})
    )
    with torch.no_grad():
        want = model([image])[0]
    assert len(boxes) == len(want["boxes"]) == 40
    for box, score, label in zip(boxes, scores, labels):
        same = (want["labels"] == label) & ((want["scores"] - score).abs() <= 1e-5)
        close = (want["boxes"][same] - box).abs().amax(dim=1) <= 1e-3
        assert close.any(), f"ONNX detection {box.tolist()} {score:.6f} {label} not in the model's"
