"""The fused op on CPU (C++ kernels) against the plain-PyTorch reference."""

import itertools

import pytest
import torch
from op_utils import GRAD_NAMES, TOL, assert_close_scaled, forward_and_grads, make_inputs

import lgf_ops
from lgf_ops.reference import lgf_fused_reference

pytestmark = pytest.mark.skipif(
    "cpp" not in lgf_ops.available_backends(), reason="C++ extension lgf_ops._C is not built"
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "permuted", "strided"]
# N in {0,1,3}, C in {1,5,64}, H and W each covering {1,2,3,7,33}
SHAPES = [
    (N, C, H, W)
    for N in (0, 1, 3)
    for C in (1, 5, 64)
    for H, W in ((1, 33), (2, 7), (3, 3), (7, 1), (33, 2))
]


def cpp(*args):
    return lgf_ops.lgf_fused(*args, backend="cpp")


def check_parity(inputs, tol, dy=None):
    y_ref = lgf_fused_reference(*inputs)
    dy = torch.randn_like(y_ref) if dy is None else dy
    y, grads = forward_and_grads(cpp, inputs, dy)
    _, grads_ref = forward_and_grads(lgf_fused_reference, inputs, dy)
    assert_close_scaled(y, y_ref, tol, "y")
    for name, a, e in zip(GRAD_NAMES, grads, grads_ref):
        assert_close_scaled(a, e, tol, f"d{name}")
    return y, grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_parity_with_reference(shape, layout, dtype):
    torch.manual_seed(1)
    inputs = make_inputs(*shape, dtype=dtype, layout=layout)
    y, grads = check_parity(inputs, TOL[dtype])
    if layout == "channels_last" and not inputs[0].is_contiguous():
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert grads[0].is_contiguous(memory_format=torch.channels_last)
    elif layout == "nchw":
        assert y.is_contiguous() and grads[0].is_contiguous()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_x_with_float32_parameters(layout, dtype):
    """The AMP case: fp16/bf16 activations, fp32 parameters; parameter grads stay fp32."""
    inputs = make_inputs(2, 40, 9, 11, dtype=dtype, layout=layout, param_dtype=torch.float32)
    _, grads = check_parity(inputs, TOL[dtype])
    assert [t.dtype for t in grads] == [
        dtype,
        torch.float32,
        torch.float32,
        dtype,
        torch.float32,
        torch.float32,
    ]


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_larger_map_fp32(layout):
    """A map wider than one SIMD vector and taller than one row tile, C over one channel tile."""
    check_parity(make_inputs(2, 70, 37, 45, layout=layout), TOL[torch.float32])


@pytest.fixture(params=["portable", "avx2", "avx512"])
def simd(request, monkeypatch):
    """Caps the float CPU kernels at this SIMD level (LGF_CPU_SIMD); skips levels the CPU lacks."""
    monkeypatch.setenv("LGF_CPU_SIMD", request.param)
    if torch.ops.lgf.cpu_simd() != request.param:
        pytest.skip(f"this CPU does not support {request.param} (runs {torch.ops.lgf.cpu_simd()})")
    return request.param


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_every_simd_level_matches_reference(simd, layout):
    """LGF_CPU_SIMD caps the float kernels (portable < avx2 < avx512); each must be right."""
    for shape in ((2, 13, 10, 19), (1, 130, 9, 37), (3, 5, 1, 1)):
        check_parity(make_inputs(*shape, layout=layout), TOL[torch.float32])
    # widths on both sides of the 8- and 16-lane boundaries (edge vectors, masked tails)
    for W in (2, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 49):
        check_parity(make_inputs(1, 3, 4, W, layout=layout), TOL[torch.float32])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_fp32_kernels_within_1e6_of_fp64(simd, layout):
    """The fast exp2/division math keeps fp32 results within 1e-6 (relative to each output's
    largest value) of the fp64 reference: a few float32 ulps, not just the loose parity bound."""
    x = [t.detach() for t in make_inputs(2, 37, 21, 45, layout=layout)]
    dy = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(3))
    got = (torch.ops.lgf.fused_forward(*x),) + tuple(torch.ops.lgf.fused_backward(dy, *x))
    x64 = [t.double().requires_grad_() for t in x]
    y64 = lgf_fused_reference(*x64)
    want = (y64,) + torch.autograd.grad(y64, x64, dy.double())
    for name, a, e in zip(("y",) + GRAD_NAMES, got, want):
        err = (a.double() - e).abs().max().item() / e.abs().max().item()
        assert err <= 1e-6, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_saturated_gates_stay_finite(simd, layout):
    """Gate offsets c_l, c_g far beyond the exp clamps (|z| up to ~1e3): sigmoids saturate."""
    inputs = make_inputs(2, 19, 6, 21, layout=layout)
    with torch.no_grad():
        inputs[4][2].mul_(300.0)  # c_l
        inputs[4][5].mul_(300.0)  # c_g
    y, grads = check_parity(inputs, TOL[torch.float32])
    assert torch.isfinite(y).all() and all(torch.isfinite(t).all() for t in grads)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_stride_zero_upstream_gradient(layout):
    """y.sum().backward() hands the backward an expanded (stride 0) gradient."""
    inputs = make_inputs(2, 6, 5, 9, layout=layout)
    cpp(*inputs).sum().backward()
    grads = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    lgf_fused_reference(*inputs).sum().backward()
    for name, a, t in zip(GRAD_NAMES, grads, inputs):
        assert_close_scaled(a, t.grad, TOL[torch.float32], f"d{name}")


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "permuted"])
def test_gradcheck_fp64(layout):
    inputs = make_inputs(2, 3, 5, 6, dtype=torch.float64, layout=layout)
    assert torch.autograd.gradcheck(cpp, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_gradgrad_is_not_silently_wrong(layout):
    """Double backward is not implemented: it must raise, not return wrong numbers."""
    inputs = make_inputs(1, 2, 3, 3, dtype=torch.float64, layout=layout)
    y = cpp(*inputs)
    (gx,) = torch.autograd.grad(y.sum(), inputs[0], create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(gx.sum(), inputs[1])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_backward_bitwise_deterministic(layout):
    inputs = make_inputs(3, 40, 21, 17, layout=layout)
    dy = torch.randn(3, 40, 21, 17)
    first = forward_and_grads(cpp, inputs, dy)[1]
    again = forward_and_grads(cpp, inputs, dy)[1]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = forward_and_grads(cpp, inputs, dy)[1]
    finally:
        torch.set_num_threads(threads)
    for name, a, b, c in zip(GRAD_NAMES, first, again, single):
        assert torch.equal(a, b), f"d{name} differs between two runs"
        assert torch.equal(a, c), f"d{name} depends on the number of threads"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_backward_saves_only_the_inputs(layout):
    """Memory held for backward: exactly the six inputs, no N*C*H*W intermediate."""
    inputs = make_inputs(2, 8, 6, 7, layout=layout)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = cpp(*inputs)
    assert len(saved) == 6
    for s, t in zip(saved, inputs):
        assert s.data_ptr() == t.data_ptr() and s.shape == t.shape
    y.sum().backward()


def test_opcheck_forward_and_backward():
    for layout in ("nchw", "channels_last"):
        inputs = make_inputs(2, 5, 4, 6, layout=layout)
        torch.library.opcheck(torch.ops.lgf.fused_forward.default, tuple(inputs))
        dy = torch.randn(2, 5, 4, 6)
        plain = tuple(t.detach() for t in inputs)
        torch.library.opcheck(torch.ops.lgf.fused_backward.default, (dy,) + plain)


def test_torch_compile_fullgraph_forward_backward():
    inputs = make_inputs(2, 8, 7, 9)

    def fn(x, w, b, g, gate, gamma):
        return lgf_ops.lgf_fused(x, w, b, g, gate, gamma, backend="cpp").square().mean()

    compiled = torch.compile(fn, fullgraph=True, backend="inductor")
    loss = compiled(*inputs)
    grads = torch.autograd.grad(loss, inputs)
    ref_loss = lgf_fused_reference(*inputs).square().mean()
    ref_grads = torch.autograd.grad(ref_loss, inputs)
    assert_close_scaled(loss, ref_loss, TOL[torch.float32], "loss")
    for name, a, e in zip(GRAD_NAMES, grads, ref_grads):
        assert_close_scaled(a, e, TOL[torch.float32], f"d{name}")


def test_large_index_arithmetic_is_64bit():
    """A tensor view whose element offsets exceed 2**31 (a stride trick, little real memory)."""
    base = torch.randn(4, 3, 5)
    # x[n, c, h, w] = base[n, c, h] for any w: stride 0 over W, W large so N*C*H*W > 2**31
    W = 2**31 // (4 * 3 * 5) + 8
    x = base[..., None].expand(4, 3, 5, W)
    # compare one narrow column window; the kernel reads every column, so offsets pass 2**31
    w = torch.randn(3, 1, 3, 3) * 0.3
    others = (torch.randn(3) * 0.1, torch.randn(4, 3), torch.randn(6, 3), torch.randn(3))
    small = x[..., :4].contiguous()
    expected = lgf_fused_reference(small, w, *others)
    # The full output would need 8 GiB; instead run the kernel on a window starting past 2**31.
    offset_view = x[..., W - 4 :]
    got = lgf_ops.lgf_fused(offset_view, w, *others, backend="cpp")
    assert_close_scaled(
        got, lgf_fused_reference(offset_view.contiguous(), w, *others), TOL[torch.float32]
    )
    assert expected.shape == got.shape


BAD = {
    "rank": lambda a: [a[0][0]] + a[1:],
    "weight_not_3x3": lambda a: [a[0], torch.randn(4, 1, 5, 5)] + a[2:],
    "weight_not_depthwise": lambda a: [a[0], torch.randn(4, 2, 3, 3)] + a[2:],
    "C_mismatch_weight": lambda a: [a[0], torch.randn(3, 1, 3, 3)] + a[2:],
    "bias_shape": lambda a: a[:2] + [torch.randn(5)] + a[3:],
    "g_shape": lambda a: a[:3] + [torch.randn(4, 2)] + a[4:],
    "gate_shape": lambda a: a[:4] + [torch.randn(5, 4)] + a[5:],
    "gamma_shape": lambda a: a[:5] + [torch.randn(4, 1)],
    "int_x": lambda a: [a[0].to(torch.int32)] + a[1:],
    "bool_weight": lambda a: [a[0], a[1] > 0] + a[2:],
    "complex_g": lambda a: a[:3] + [a[3].to(torch.complex64)] + a[4:],
    "dtype_mismatch_g": lambda a: a[:3] + [a[3].double()] + a[4:],
    "dtype_mismatch_params": lambda a: [a[0], a[1].double()] + a[2:],
    "half_params_float_x": lambda a: (
        [a[0]] + [t.half() for t in a[1:3]] + [a[3]] + [t.half() for t in a[4:]]
    ),
    "device_mismatch": lambda a: a[:5] + [torch.empty(4, device="meta")],
    "not_a_tensor": lambda a: a[:5] + [[1.0, 2.0, 3.0, 4.0]],
}
BAD_NAMES = {
    "rank": "x",
    "weight_not_3x3": "weight",
    "weight_not_depthwise": "weight",
    "C_mismatch_weight": "weight",
    "bias_shape": "bias",
    "g_shape": "g",
    "gate_shape": "gate",
    "gamma_shape": "gamma",
    "int_x": "x",
    "bool_weight": "weight",
    "complex_g": "g",
    "dtype_mismatch_g": "g",
    "dtype_mismatch_params": "bias",
    "half_params_float_x": "parameters",
    "device_mismatch": "gamma",
    "not_a_tensor": "gamma",
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("backend", ["auto", "cpp", "reference"])
def test_bad_input_raises_clear_error(case, backend):
    good = [t.detach() for t in make_inputs(2, 4, 5, 5)]
    args = BAD[case](good)
    with pytest.raises((TypeError, ValueError)) as info:
        lgf_ops.lgf_fused(*args, backend=backend)
    assert BAD_NAMES[case] in str(info.value)


@pytest.mark.parametrize("case", sorted(set(BAD) - {"not_a_tensor", "device_mismatch"}))
def test_bad_input_to_the_raw_op_raises_not_crashes(case):
    good = [t.detach() for t in make_inputs(2, 4, 5, 5)]
    args = BAD[case](good)
    with pytest.raises(RuntimeError, match="lgf"):
        torch.ops.lgf.fused_forward(*args)
    with pytest.raises(RuntimeError, match="lgf"):
        torch.ops.lgf.fused_backward(torch.randn(2, 4, 5, 5), *args)


def test_raw_backward_checks_grad_output():
    args = [t.detach() for t in make_inputs(2, 4, 5, 5)]
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.lgf.fused_backward(torch.randn(2, 4, 5, 6), *args)
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.lgf.fused_backward(torch.randn(2, 4, 5, 5, dtype=torch.float64), *args)


def test_backend_selection_and_errors(monkeypatch):
    inputs = [t.detach() for t in make_inputs(1, 3, 4, 4)]
    assert "cpp" in lgf_ops.available_backends() and "reference" in lgf_ops.available_backends()
    assert lgf_ops.resolve_backend("auto", inputs[0].device) == "cpp"
    with pytest.raises(ValueError, match="backend"):
        lgf_ops.lgf_fused(*inputs, backend="fast")
    if "cuda" not in lgf_ops.available_backends():
        with pytest.raises(RuntimeError, match="cuda"):
            lgf_ops.lgf_fused(*inputs, backend="cuda")
    else:
        with pytest.raises(ValueError, match="CUDA tensors"):
            lgf_ops.lgf_fused(*inputs, backend="cuda")
    monkeypatch.setenv("LGF_BACKEND", "reference")
    assert lgf_ops.resolve_backend(None, inputs[0].device) == "reference"
    assert lgf_ops.resolve_backend("auto", inputs[0].device) == "reference"  # modules pass "auto"
    assert lgf_ops.resolve_backend("cpp", inputs[0].device) == "cpp"  # an explicit choice wins
    monkeypatch.setenv("LGF_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="LGF_BACKEND"):
        lgf_ops.lgf_fused(*inputs)


def test_all_layout_dtype_combinations_agree_with_each_other():
    """NCHW and channels_last runs of the same values give the same numbers (fp64: exactly)."""
    a = make_inputs(2, 9, 6, 10, dtype=torch.float64)
    b = [t.detach().clone().requires_grad_() for t in a]
    b[0] = b[0].detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    dy = torch.randn(2, 9, 6, 10, dtype=torch.float64)
    ya, ga = forward_and_grads(cpp, a, dy)
    yb, gb = forward_and_grads(cpp, b, dy)
    for x, y in itertools.chain([(ya, yb)], zip(ga, gb)):
        assert_close_scaled(x, y, 1e-12)


def test_triton_import_is_tried_once_and_its_failure_kept(monkeypatch):
    """A broken Triton install: the import fails once, its reason is kept (not retried on
    every call), the backend is not offered and backend='triton' names the reason."""
    import sys

    monkeypatch.setattr(lgf_ops, "_TRITON_STATE", {})
    monkeypatch.delattr(lgf_ops, "triton_op", raising=False)
    monkeypatch.setitem(sys.modules, "lgf_ops.triton_op", None)  # importing it fails
    error = lgf_ops.triton_load_error()
    assert error.startswith("importing it failed") and "lgf_ops.triton_op" in error
    assert "triton" not in lgf_ops.available_backends()
    monkeypatch.delitem(sys.modules, "lgf_ops.triton_op")  # importable again: not retried
    assert lgf_ops.triton_load_error() == error
    inputs = [t.detach() for t in make_inputs(1, 3, 4, 4)]
    with pytest.raises(RuntimeError, match="backend='triton' requested but Triton is unusable"):
        lgf_ops.lgf_fused(*inputs, backend="triton")
    with pytest.raises(RuntimeError, match="importing it failed"):
        lgf_ops.lgf_fused(*inputs, backend="triton")


def test_auto_warns_once_when_cuda_tensors_fall_back_to_the_reference(monkeypatch):
    monkeypatch.setattr(lgf_ops, "_HAS_CUDA", False)
    monkeypatch.setattr(lgf_ops, "_TRITON_STATE", {"error": "a reason for the test"})
    monkeypatch.setattr(lgf_ops, "_WARNED", set())
    cuda = torch.device("cuda")
    with pytest.warns(RuntimeWarning, match="reference.*a reason for the test") as record:
        assert lgf_ops.resolve_backend("auto", cuda) == "reference"
        assert lgf_ops.resolve_backend("auto", cuda) == "reference"
    assert len(record) == 1
    monkeypatch.setattr(lgf_ops, "_TRITON_STATE", {"error": ""})  # Triton usable: no warning
    assert lgf_ops.resolve_backend("auto", cuda) == "triton"
