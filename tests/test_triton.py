"""Tests of the Triton backend (lgf_ops.triton_op and the triton_* kernel modules).

Without a GPU the kernels run through Triton's CPU interpreter (TRITON_INTERPRET=1, set by
conftest.py before triton is imported). The interpreter is slow, so shapes are tiny; tiles are
forced small in some tests so that several programs, strips, column groups and tails run.
The lowering test compiles the kernels for GPU targets without a GPU.
"""

import os
import subprocess
import sys
import types

import pytest
import torch

triton_op = pytest.importorskip("lgf_ops.triton_op", reason="triton is not importable")
import lgf_ops  # noqa: E402
from lgf_ops import triton_launch as L  # noqa: E402
from lgf_ops import triton_tiling as tiling  # noqa: E402
from lgf_ops.reference import lgf_fused_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not L.interpreting():
    pytest.skip(
        "no GPU and TRITON_INTERPRET is not set: the Triton kernels cannot run",
        allow_module_level=True,
    )

GRAD_NAMES = ("x", "weight", "bias", "g", "gate", "gamma")
# Bound on max|err| relative to (1 + max|expected|), per input dtype.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-12}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_inputs(N, C, H, W, dtype=torch.float32, pdtype=None, layout="nchw", seed=0):
    """Random inputs with gates far enough from 0 that both sigmoids and their slopes matter.
    layout: nchw, channels_last, strided (a non-dense view) or permuted (channels unit-stride
    without being channels_last-contiguous)."""
    gen = torch.Generator().manual_seed(seed)
    pdtype = pdtype or dtype

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt).to(DEVICE)

    if layout == "strided":
        x = rnd(N, 2 * C, 2 * H + 1, W + 2)[:, ::2, 1::2, 2:]
    elif layout == "permuted":
        x = rnd(N, W, H, C).permute(0, 3, 2, 1)
    else:
        x = rnd(N, C, H, W)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    return (
        x,
        rnd(C, 1, 3, 3, scale=0.5, dt=pdtype),
        rnd(C, scale=0.3, dt=pdtype),
        rnd(N, C),
        rnd(6, C, dt=pdtype),
        rnd(C, scale=0.5, dt=pdtype),
    )


def random_dy(x, seed=7):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(x.shape, generator=gen, dtype=torch.float64).to(x.dtype).to(DEVICE)


def kernel_name(k) -> str:
    """The Python name of a launched kernel: k may be wrap_triton's wrapper (.kernel), an
    autotuner, a JITFunction or an interpreted function (each holding the next in .fn)."""
    k = getattr(k, "kernel", k)
    while not isinstance(k, types.FunctionType):
        k = k.fn
    return k.__name__


def leaves(inputs):
    return [t.detach().clone().requires_grad_() for t in inputs]


def reference_fp64(inputs, dy):
    """Ground truth: lgf_fused_reference on fp64 copies of the inputs; returns y and the 6 grads."""
    ins = [t.detach().double().requires_grad_() for t in inputs]
    y = lgf_fused_reference(*ins)
    y.backward(dy.double())
    return y.detach(), [t.grad for t in ins]


def run_triton(inputs, dy, fn=None):
    fn = fn or triton_op.lgf_fused_triton
    ins = leaves(inputs)
    y = fn(*ins)
    y.backward(dy)
    return y.detach(), [t.grad for t in ins]


def assert_close(actual, expected, tol, what):
    assert actual.shape == expected.shape, (
        f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    bound = tol * (1.0 + (expected.abs().max().item() if expected.numel() else 0.0))
    assert err <= bound, f"{what}: max abs error {err:.3e} > {bound:.3e}"


def check_parity(inputs, dy=None, fn=None):
    x = inputs[0]
    dy = random_dy(x) if dy is None else dy
    y, grads = run_triton(inputs, dy, fn)
    y_ref, grads_ref = reference_fp64(inputs, dy)
    tol = TOL[x.dtype]
    assert y.dtype == x.dtype
    assert_close(y, y_ref, tol, "y")
    for name, gr, gr_ref, inp in zip(GRAD_NAMES, grads, grads_ref, inputs):
        assert gr.dtype == inp.dtype, f"d{name} has dtype {gr.dtype}, expected {inp.dtype}"
        assert_close(gr, gr_ref, tol, f"d{name}")
    return y, grads


def check_launchers(inputs, dy, **tiles):
    """The launchers with forced tiles against the fp64 reference (fp32 tolerance)."""
    fwd_tiles = {k: v for k, v in tiles.items() if k in ("block_c", "block_w", "rows")}
    y = L.lgf_forward(*inputs, **fwd_tiles)
    grads = L.lgf_backward(dy, *inputs, **tiles)
    y_ref, grads_ref = reference_fp64(inputs, dy)
    assert_close(y, y_ref, TOL[torch.float32], "y")
    for name, gr, gr_ref in zip(GRAD_NAMES, grads, grads_ref):
        assert_close(gr, gr_ref, TOL[torch.float32], f"d{name}")
    return y, grads


# ---------------------------------------------------------------- parity


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize(
    "dtype,pdtype",
    [(torch.float32, None), (torch.float16, torch.float32), (torch.bfloat16, None)],
    ids=["fp32", "fp16-fp32params", "bf16"],
)
def test_parity_with_reference(dtype, pdtype, layout):
    inputs = make_inputs(2, 5, 7, 6, dtype, pdtype, layout)
    y, grads = check_parity(inputs)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    assert grads[0].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize(
    "layout,tiles",
    [
        ("nchw", dict(block_w=4, rows=2)),  # backward: 2 output columns per program
        ("nchw", dict(block_c=2, block_w=4, rows=3)),
        ("channels_last", dict(block_c=2, block_w=2, rows=2)),
        ("channels_last", dict(block_c=2, block_w=1, groups=2, rows=3)),  # column groups
        ("strided", dict(block_w=4, rows=2)),
        ("permuted", dict(block_c=2, block_w=2, rows=3)),
    ],
    ids=str,
)
def test_many_programs_with_tails(layout, tiles):
    """Forced small tiles: several channel blocks, column blocks, row strips (and column groups
    in the channels_last backward), all with masked tails."""
    x, *params = make_inputs(1, 3, 6, 5, layout=layout, seed=1)
    if layout == "strided":
        assert x.shape == (1, 3, 6, 5) and not x.is_contiguous()
    y, grads = check_launchers([x, *params], random_dy(x), **tiles)
    fmt = lgf_ops._layout.output_memory_format(x)
    assert y.is_contiguous(memory_format=fmt) and grads[0].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 9), (2, 3, 9, 1), (1, 1, 1, 1), (1, 7, 2, 3)], ids=str)
def test_odd_shapes(shape, layout):
    check_parity(make_inputs(*shape, layout=layout, seed=2))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_empty_batch(layout):
    inputs = make_inputs(0, 4, 5, 5, layout=layout)
    y, grads = check_parity(inputs)
    assert y.shape == (0, 4, 5, 5)
    for name, gr in zip(GRAD_NAMES[1:], grads[1:]):
        assert not gr.any(), f"d{name} should be zero for an empty batch"


# ---------------------------------------------------------------- upstream gradient layouts


def test_stride0_upstream_gradient():
    inputs = make_inputs(2, 3, 4, 5, seed=3)
    ins = leaves(inputs)
    triton_op.lgf_fused_triton(*ins).sum().backward()  # autograd hands backward an expanded dy
    _, grads_ref = reference_fp64(inputs, torch.ones(inputs[0].shape, device=DEVICE))
    for name, t, gr_ref in zip(GRAD_NAMES, ins, grads_ref):
        assert_close(t.grad, gr_ref, TOL[torch.float32], f"d{name}")
    # The kernel reads dy through its strides: a stride-0 dy gives exactly the dense result.
    x = inputs[0]
    dy0 = torch.ones((), device=DEVICE).expand(x.shape)
    assert dy0.stride() == (0, 0, 0, 0)
    a = L.lgf_backward(dy0, *inputs)
    b = L.lgf_backward(torch.ones(x.shape, device=DEVICE), *inputs)
    for name, u, v in zip(GRAD_NAMES, a, b):
        assert torch.equal(u, v), f"d{name} differs between stride-0 and dense dy"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_upstream_gradient_in_the_other_layout(layout):
    """dy laid out unlike x is made to match it: bitwise the result of a dy in x's layout."""
    inputs = make_inputs(1, 3, 4, 5, layout=layout, seed=11)
    dy = random_dy(inputs[0])
    same = dy.contiguous(memory_format=lgf_ops._layout.output_memory_format(inputs[0]))
    other_fmt = torch.contiguous_format if layout == "channels_last" else torch.channels_last
    other = dy.contiguous(memory_format=other_fmt)
    assert same.stride() != other.stride()
    for name, u, v in zip(
        GRAD_NAMES, L.lgf_backward(same, *inputs), L.lgf_backward(other, *inputs)
    ):
        assert torch.equal(u, v), f"d{name} depends on dy's layout"


# ---------------------------------------------------------------- numerics (issue 19)


def large_inputs(scale, dtype, layout, seed):
    """|l| ~ scale. Channel 0: every l > 0 with a_l > 0 > a_g, so both gates saturate at every
    pixel; channel 1: random signs, mostly saturated gates."""
    gen = torch.Generator().manual_seed(seed)
    N, C, H, W = 2, 2, 4, 4

    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    u = torch.rand(N, C, H, W, generator=gen, dtype=torch.float64)
    x = 2 * u - 1  # |x| <= 1: x * 6e4 fits fp16, and so does y
    x[:, 0] = 0.5 + 0.5 * u[:, 0]
    weight = torch.zeros(C, 1, 3, 3, dtype=torch.float64)
    weight[:, 0, 1, 1] = 1.0  # l = x + small neighbour terms: |l| ~ |x|
    weight += 0.05 * rnd(C, 1, 3, 3)
    weight[0] = weight[0].abs()
    gate = rnd(6, C)
    gate[0, 0], gate[3, 0] = gate[0, 0].abs() + 0.5, -gate[3, 0].abs() - 0.5
    pdt = torch.float32 if dtype == torch.float16 else dtype
    x = (x * scale).to(dtype).to(DEVICE)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    params = (weight, rnd(C), rnd(N, C), gate, torch.full((C,), 0.05, dtype=torch.float64))
    dts = (pdt, pdt, dtype, pdt, pdt)
    return [x] + [p.to(dt).to(DEVICE) for p, dt in zip(params, dts)]


# the forward's sigmoid lets exp(-z) overflow to inf on purpose (s = 0 exactly); under the
# interpreter that is numpy's exp, which warns
@pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize(
    "scale,dtype",
    [
        (1e3, torch.float32),
        (1e4, torch.float32),
        (6e4, torch.float16),
        (1e20, torch.float32),
        (1e30, torch.float32),
    ],
    ids=["1e3", "1e4", "6e4-fp16", "1e20", "1e30"],
)
def test_large_activations_match_fp64(scale, dtype, layout):
    """|l| up to 1e30 with saturated gates: y and all six gradients against the fp64 reference,
    each within TOL of its own magnitude, and all finite (the reference's are)."""
    inputs = large_inputs(scale, dtype, layout, seed=int(scale) % 97)
    dy = random_dy(inputs[0], seed=5)
    y, grads = run_triton(inputs, dy)
    y_ref, grads_ref = reference_fp64(inputs, dy)
    assert_close(y, y_ref, TOL[dtype], "y")
    assert torch.isfinite(y).all()
    for name, gr, gr_ref in zip(GRAD_NAMES, grads, grads_ref):
        assert torch.isfinite(gr).all(), f"d{name} is not finite"
        assert_close(gr, gr_ref, TOL[dtype], f"d{name}")
    # channel 0 saturates: the gate slopes vanish (fp64: < 1e-200), and so do d(a, b, c)
    assert grads_ref[4][:, 0].abs().max() < 1e-200 and grads[4][:, 0].abs().max() == 0


# ---------------------------------------------------------------- gradcheck, determinism


def test_gradcheck_fp64():
    """Full gradcheck (every Jacobian entry) in fp64: the interpreter and Triton support fp64."""
    inputs = leaves(make_inputs(1, 1, 3, 4, dtype=torch.float64, seed=4))
    assert torch.autograd.gradcheck(
        triton_op.lgf_fused_triton, inputs, eps=1e-6, atol=1e-8, rtol=1e-6
    )


def test_gradcheck_fp64_channels_last_fast_mode():
    inputs = leaves(make_inputs(2, 3, 3, 3, dtype=torch.float64, layout="channels_last", seed=5))
    assert torch.autograd.gradcheck(
        triton_op.lgf_fused_triton, inputs, eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True
    )


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_backward_bitwise_deterministic(layout):
    """Twice the same backward, bitwise: with several partial-sum rows per channel to reduce,
    and in bf16 through autograd (fp32 accumulation)."""
    x, *params = make_inputs(1, 3, 5, 5, layout=layout, seed=6)
    dy = random_dy(x)
    kw = dict(block_c=2, block_w=4, rows=2)
    first = L.lgf_backward(dy, x, *params, **kw)
    second = L.lgf_backward(dy, x, *params, **kw)
    for name, u, v in zip(GRAD_NAMES, first, second):
        assert torch.equal(u, v), f"d{name} differs between two identical backward runs"
    inputs = make_inputs(2, 2, 3, 4, dtype=torch.bfloat16, layout=layout, seed=6)
    dy = random_dy(inputs[0])
    _, g1 = run_triton(inputs, dy)
    _, g2 = run_triton(inputs, dy)
    for name, u, v in zip(GRAD_NAMES, g1, g2):
        assert torch.equal(u, v), f"d{name} differs between two identical autograd backward runs"


# ---------------------------------------------------------------- tiling, index guard, workspace


def test_int64_guard_chooses_by_tile_reach():
    """int32 offsets for every dense layout of a large map; int64 once a program's strip
    (stride x extent, halo included) reaches 2^31 elements: a huge image, or a view with a huge
    column stride."""
    shape = (16, 256, 160, 160)
    nchw = (256 * 160 * 160, 160 * 160, 160, 1)
    nhwc = (256 * 160 * 160, 1, 160 * 256, 256)
    assert not tiling.forward_tiling(shape, nchw, nchw, 4).index64
    assert not tiling.forward_tiling(shape, nhwc, nhwc, 4).index64
    assert not tiling.backward_nchw_tiling(shape, [nchw] * 3, 4, 4).index64
    assert not tiling.backward_nhwc_tiling(shape, [nhwc] * 3, 4, 4).index64
    big = (1, 1, 2**16, 2**16)  # one plane of 2^32 elements
    big_nchw = (2**32, 2**32, 2**16, 1)
    assert tiling.forward_tiling(big, big_nchw, big_nchw, 4).index64
    assert tiling.backward_nchw_tiling(big, [big_nchw] * 3, 4, 4).index64
    assert not tiling.forward_tiling(big, big_nchw, big_nchw, 4, rows=2**14).index64
    huge_w = (1, 1, 1, 2**26)  # a column stride of 2^26: 32 columns reach past 2^31
    dense = (4 * 64, 4 * 64, 64, 1)
    assert tiling.forward_tiling((1, 1, 4, 64), huge_w, dense, 4, block_w=32).index64
    assert not tiling.forward_tiling((1, 1, 4, 64), huge_w, dense, 4, block_w=16).index64
    nhwc_huge_w = (1, 1, 1, 2**29)  # the 6 columns of a group and its halo reach past 2^31
    assert tiling.backward_nhwc_tiling((1, 64, 4, 4), [nhwc_huge_w] * 3, 4, 4).index64
    assert not tiling.backward_nhwc_tiling((1, 64, 4, 4), [(1, 1, 1, 2**28)] * 3, 4, 4).index64


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_int64_path_matches(layout, monkeypatch):
    """The int64-offset variant of every kernel, chosen by the guard (here with the limit
    lowered so that a small tensor needs it), gives the int32 variant's results."""
    inputs = make_inputs(2, 3, 6, 5, layout=layout, seed=12)
    dy = random_dy(inputs[0])
    want = (L.lgf_forward(*inputs), *L.lgf_backward(dy, *inputs))
    monkeypatch.setattr(tiling, "INT32_LIMIT", 8)
    chosen = []
    launch = L._launch
    monkeypatch.setattr(L, "_launch", lambda *a, **kw: chosen.append(kw) or launch(*a, **kw))
    got = (L.lgf_forward(*inputs), *L.lgf_backward(dy, *inputs))
    assert [kw["INDEX64"] for kw in chosen if "INDEX64" in kw] == [True, True]
    for name, u, v in zip(("y",) + GRAD_NAMES, got, want):
        assert torch.equal(u, v), f"{name} differs between the int64 and int32 variants"


def _workspace_bytes(shape, channels_last, dtype):
    N, C, H, W = shape
    esize = torch.empty((), dtype=dtype).element_size()
    acc = 8 if dtype == torch.float64 else 4
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    strides = [torch.empty(shape, device="meta").contiguous(memory_format=fmt).stride()] * 3
    if channels_last:
        t = tiling.backward_nhwc_tiling(shape, strides, esize, acc)
    else:
        t = tiling.backward_nchw_tiling(shape, strides, esize, acc)
    return N * C * t.n_strips * t.n_wblocks * 16 * acc, N * C * H * W * esize


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [(16, 256, 160, 160), (2, 512, 80, 80), (1, 64, 40, 40)], ids=str)
def test_workspace_at_most_a_sixteenth_of_x(shape, dtype, channels_last):
    ws, x = _workspace_bytes(shape, channels_last, dtype)
    assert 0 < ws <= x / 16, f"workspace {ws} bytes for x of {x} bytes"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_backward_is_two_launches_and_allocations(layout, monkeypatch):
    """One backward kernel and one finishing kernel; around them only allocations (dx, the
    small workspace and the five gradients): no N*C*H*W scratch, no torch ops on the workspace."""
    from torch.utils._python_dispatch import TorchDispatchMode

    inputs = make_inputs(1, 4, 6, 6, layout=layout, seed=13)
    dy = random_dy(inputs[0]).contiguous(
        memory_format=lgf_ops._layout.output_memory_format(inputs[0])
    )
    names, ops, inside = [], [], []
    launch = L._launch

    def counted(kernel, *args, **kw):
        names.append(kernel_name(kernel))
        inside.append(True)  # the interpreter's own tensor copies inside a launch do not count
        launch(kernel, *args, **kw)
        inside.pop()

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not inside:
                ops.append(str(func))
            return func(*args, **(kwargs or {}))

    monkeypatch.setattr(L, "_launch", counted)
    with Ops():
        L.lgf_backward(dy, *inputs)
    kind = {"nchw": "nchw", "channels_last": "nhwc"}[layout]
    assert names == [f"lgf_backward_{kind}_kernel", "lgf_finish_grads_kernel"], names
    assert all(op.startswith("aten.empty") for op in ops), ops
    assert len(ops) == 7, ops  # dx, workspace, dweight, dbias, dgate, dgamma, dg


# ---------------------------------------------------------------- the op, dispatch, compile


def test_public_op_backend_triton():
    assert "triton" in lgf_ops.available_backends()
    inputs = make_inputs(2, 4, 5, 5, layout="channels_last", seed=8)

    def via_dispatch(*args):
        return lgf_ops.lgf_fused(*args, backend="triton")

    check_parity(inputs, fn=via_dispatch)
    out = lgf_ops.lgf_fused(*leaves(inputs), backend="triton")
    assert "lgf_triton_fused_forward" in out.grad_fn.name()  # the Triton op, not the reference


def test_bad_input_raises_clear_error():
    x, w, b, g, gate, gamma = make_inputs(1, 3, 4, 4)
    with pytest.raises(ValueError, match="gate"):
        triton_op.lgf_fused_triton(x, w, b, g, gate[:5], gamma)
    with pytest.raises(TypeError, match="x"):
        triton_op.lgf_fused_triton(x.to(torch.int32), w, b, g, gate, gamma)
    with pytest.raises(ValueError, match="block_w must be a power of two"):
        L.lgf_forward(x, w, b, g, gate, gamma, block_w=3)
    with pytest.raises(ValueError, match="dy must have x's shape"):
        L.lgf_backward(x[:, :2], x, w, b, g, gate, gamma)


@pytest.mark.skipif(DEVICE != "cpu", reason="checks the CPU-without-interpreter error")
def test_cpu_tensors_without_interpreter_raise(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        L.lgf_forward(*make_inputs(1, 2, 3, 3))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_opcheck(layout):
    inputs = leaves(make_inputs(1, 3, 4, 4, layout=layout, seed=9))
    torch.library.opcheck(torch.ops.lgf_triton.fused_forward.default, tuple(inputs))
    dy = random_dy(inputs[0])
    torch.library.opcheck(
        torch.ops.lgf_triton.fused_backward.default, (dy, *[t.detach() for t in inputs])
    )


def test_torch_compile_fullgraph():
    """The op inside torch.compile(fullgraph=True), forward and backward, gives eager's values.
    (On a GPU Inductor compiles the kernels inside the triton_op; under the interpreter the op
    stays opaque, aot_eager.)"""
    inputs = make_inputs(2, 4, 5, 6, seed=14)

    def f(*args):
        return lgf_ops.lgf_fused(*args, backend="triton").square().sum()

    backend = "inductor" if DEVICE == "cuda" else "aot_eager"
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    a, b = leaves(inputs), leaves(inputs)
    ya, yb = f(*a), compiled(*b)
    ya.backward()
    yb.backward()
    torch.testing.assert_close(yb, ya)
    for name, u, v in zip(GRAD_NAMES, b, a):
        torch.testing.assert_close(u.grad, v.grad, msg=f"d{name}")


def test_torch_export_keeps_the_op():
    """torch.export sees the Triton op (a triton_op: exported as lgf_triton::fused_forward,
    its kernels compiled by the backend that loads the program) and runs it."""
    inputs = make_inputs(1, 4, 5, 6, layout="channels_last", seed=15)

    class Block(torch.nn.Module):
        def forward(self, *args):
            return lgf_ops.lgf_fused(*args, backend="triton")

    exported = torch.export.export(Block(), tuple(inputs))
    targets = [str(node.target) for node in exported.graph.nodes]
    assert any("lgf_triton.fused_forward" in t for t in targets), targets
    torch.testing.assert_close(exported.module()(*inputs), Block()(*inputs))


def test_flop_formula_and_no_double_backward():
    from torch.utils.flop_counter import FlopCounterMode

    from lgf_ops import flops

    ins = leaves(make_inputs(1, 2, 3, 3, seed=10))
    with FlopCounterMode(display=False) as counter:
        y = triton_op.lgf_fused_triton(*ins)
    assert counter.get_total_flops() == flops.FORWARD_FLOPS_PER_ELEMENT * y.numel()
    (gx,) = torch.autograd.grad(y.sum(), ins[0], create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


# ---------------------------------------------------------------- lowering to GPU code

_LOWERING_SCRIPT = r"""
import sys, time, torch
sys.path[:0] = [ROOT, ROOT + "/benchmarks"]
from static import triton_capture as tc
from static.cuobjdump import ToolMissing, dump_cubin_bytes
from static.sass import local_store_bytes
from static.triton_report import meta_inputs
from lgf_ops import triton_launch as L

seen = set()
for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
    for layout in ("nchw", "channels_last"):
        ins = meta_inputs((2, 64, 24, 160), dtype, layout)  # the tiles of shape B
        launches = tc.capture(L.lgf_forward, *ins).launches
        launches += tc.capture(L.lgf_backward, torch.empty_like(ins[0]), *ins).launches
        for launch in launches:
            for cc in (80, 90):
                b = tc.bind(launch, cc)
                key = (launch.name, cc, repr(b.signature), repr(b.constexprs), repr(b.attrs))
                if key in seen:
                    continue
                seen.add(key)
                t0 = time.time()
                kernel = tc.compile_launch(launch, cc)
                assert kernel.asm.get("cubin"), "no cubin"
                try:
                    res, fns = dump_cubin_bytes(kernel.asm["cubin"])
                    spill = sum(local_store_bytes(f) for f in fns)
                except ToolMissing:
                    spill = -1
                print("lowered", launch.name, str(dtype)[6:], layout, f"sm_{cc}",
                      f"spill={spill}", f"{time.time() - t0:.0f}s", flush=True)
"""


@pytest.mark.skipif(
    DEVICE != "cpu", reason="on a GPU the other tests compile and run the real kernels"
)
def test_kernels_lower_to_gpu_code(tmp_path):
    """The interpreter does not run Triton's compiler. Every kernel variant the launchers
    really launch (fp32, fp16 with fp32 parameters, bf16, fp64; NCHW and channels_last) is
    captured, bound as JITFunction.run binds it (unit strides as constexprs, 16-byte
    divisibility, num_warps) and compiled for sm_80 and sm_90 in a subprocess without
    TRITON_INTERPRET (benchmarks/static/triton_capture.py); no spills except fp64."""
    pytest.importorskip("triton.backends.nvidia", reason="Triton's NVIDIA backend is missing")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    script = tmp_path / "lower.py"
    script.write_text(f"ROOT = {ROOT!r}\n" + _LOWERING_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, f"lowering failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("lowered")]
    kernels = {ln[1] for ln in lines}
    assert kernels == {
        "lgf_forward_kernel",
        "lgf_backward_nchw_kernel",
        "lgf_backward_nhwc_kernel",
        "lgf_finish_grads_kernel",
    }, proc.stdout
    for dtype in ("float32", "float16", "bfloat16", "float64"):
        for arch in ("sm_80", "sm_90"):
            done = {(ln[1], ln[3]) for ln in lines if ln[2] == dtype and ln[4] == arch}
            assert len(done) >= 5, f"{dtype} {arch}: {sorted(done)}"  # 3 kernels x 2 layouts
    spilled = [ln for ln in lines if ln[2] != "float64" and ln[5] not in ("spill=0", "spill=-1")]
    assert not spilled, spilled
