"""Tests of the Triton backend (lgf_ops.triton_op / lgf_ops.triton_kernels).

Without a GPU the kernels run through Triton's CPU interpreter (TRITON_INTERPRET=1, set by
conftest.py before triton is imported). The interpreter is slow, so shapes are tiny; tile sizes are
forced small in some tests so that several programs, tails and partial-sum rows are exercised.
"""

import pytest
import torch

triton_op = pytest.importorskip("lgf_ops.triton_op", reason="triton is not importable")
import lgf_ops  # noqa: E402
from lgf_ops import triton_kernels as K  # noqa: E402
from lgf_ops.reference import lgf_fused_reference  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not K._interpreting():
    pytest.skip(
        "no GPU and TRITON_INTERPRET is not set: the Triton kernels cannot run",
        allow_module_level=True,
    )

GRAD_NAMES = ("x", "weight", "bias", "g", "gate", "gamma")
# Bound on max|err| relative to (1 + max|expected|), per input dtype.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def make_inputs(N, C, H, W, dtype=torch.float32, pdtype=None, channels_last=False, seed=0):
    """Random inputs with gates far enough from 0 that both sigmoids and their slopes matter."""
    gen = torch.Generator().manual_seed(seed)
    pdtype = pdtype or dtype

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt).to(DEVICE)

    x = rnd(N, C, H, W)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return (
        x,
        rnd(C, 1, 3, 3, scale=0.5, dt=pdtype),
        rnd(C, scale=0.3, dt=pdtype),
        rnd(N, C),
        rnd(6, C, dt=pdtype),
        rnd(C, scale=0.5, dt=pdtype),
    )


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
    if dy is None:
        dy = (
            torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
            .to(x.dtype)
            .to(DEVICE)
        )
    y, grads = run_triton(inputs, dy, fn)
    y_ref, grads_ref = reference_fp64(inputs, dy)
    tol = TOL[x.dtype]
    assert y.dtype == x.dtype
    assert_close(y, y_ref, tol, "y")
    for name, gr, gr_ref, inp in zip(GRAD_NAMES, grads, grads_ref, inputs):
        assert gr.dtype == inp.dtype, f"d{name} has dtype {gr.dtype}, expected {inp.dtype}"
        assert_close(gr, gr_ref, tol, f"d{name}")
    return y, grads


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize(
    "dtype,pdtype",
    [(torch.float32, None), (torch.float16, torch.float32), (torch.bfloat16, None)],
    ids=["fp32", "fp16-fp32params", "bf16"],
)
def test_parity_with_reference(dtype, pdtype, channels_last):
    inputs = make_inputs(2, 5, 7, 6, dtype, pdtype, channels_last)
    y, grads = check_parity(inputs)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt)
    assert grads[0].is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_many_programs_with_tails(layout):
    """Small forced tiles: 2 channel blocks and 3 pixel blocks per image, both with masked tails."""
    x, *params = make_inputs(2, 3, 4, 5, channels_last=(layout == "channels_last"), seed=1)
    if layout == "strided":  # non-dense view: every stride differs from any contiguous layout
        big = torch.randn(2, 6, 9, 7, dtype=x.dtype, device=DEVICE)
        x = big[:, ::2, 1::2, 2:]
        assert x.shape == (2, 3, 4, 5) and not x.is_contiguous()
    dy = torch.randn(x.shape, dtype=x.dtype, device=DEVICE)
    kw = dict(block_c=2, block_p=8)
    y = K.lgf_forward(x, *params, **kw)
    dx, *pgrads = K.lgf_backward(dy, x, *params, **kw)
    y_ref, grads_ref = reference_fp64([x, *params], dy)
    tol = TOL[torch.float32]
    assert_close(y, y_ref, tol, "y")
    for name, gr, gr_ref in zip(GRAD_NAMES, [dx, *pgrads], grads_ref):
        assert_close(gr, gr_ref, tol, f"d{name}")
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    else:
        assert y.is_contiguous() and dx.is_contiguous()


@pytest.mark.parametrize("shape", [(1, 3, 1, 9), (2, 3, 9, 1), (1, 1, 1, 1), (1, 7, 2, 3)], ids=str)
def test_odd_shapes(shape):
    check_parity(make_inputs(*shape, seed=2))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_empty_batch(channels_last):
    inputs = make_inputs(0, 4, 5, 5, channels_last=channels_last)
    y, grads = check_parity(inputs)
    assert y.shape == (0, 4, 5, 5)
    for name, gr in zip(GRAD_NAMES[1:], grads[1:]):
        assert not gr.any(), f"d{name} should be zero for an empty batch"


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
    a = K.lgf_backward(dy0, *inputs)
    b = K.lgf_backward(torch.ones(x.shape, device=DEVICE), *inputs)
    for name, u, v in zip(GRAD_NAMES, a, b):
        assert torch.equal(u, v), f"d{name} differs between stride-0 and dense dy"


def test_gradcheck_fp64():
    """Full gradcheck (every Jacobian entry) in fp64: the interpreter and Triton support fp64."""
    inputs = leaves(make_inputs(1, 2, 3, 3, dtype=torch.float64, seed=4))
    assert torch.autograd.gradcheck(
        triton_op.lgf_fused_triton, inputs, eps=1e-6, atol=1e-8, rtol=1e-6
    )


def test_gradcheck_fp64_channels_last_fast_mode():
    inputs = leaves(make_inputs(2, 3, 3, 3, dtype=torch.float64, channels_last=True, seed=5))
    assert torch.autograd.gradcheck(
        triton_op.lgf_fused_triton, inputs, eps=1e-6, atol=1e-8, rtol=1e-6, fast_mode=True
    )


def test_backward_bitwise_deterministic():
    x, *params = make_inputs(1, 3, 4, 5, seed=6)
    dy = torch.randn(x.shape, device=DEVICE)
    kw = dict(block_c=2, block_p=8)  # several per-program partial sums to reduce
    first = K.lgf_backward(dy, x, *params, **kw)
    second = K.lgf_backward(dy, x, *params, **kw)
    for name, u, v in zip(GRAD_NAMES, first, second):
        assert torch.equal(u, v), f"d{name} differs between two identical backward runs"
    # and through autograd with the default tiles, in bf16 (fp32 accumulation)
    inputs = make_inputs(2, 3, 4, 5, dtype=torch.bfloat16, seed=6)
    dy = torch.randn(inputs[0].shape, device=DEVICE).to(torch.bfloat16)
    _, g1 = run_triton(inputs, dy)
    _, g2 = run_triton(inputs, dy)
    for name, u, v in zip(GRAD_NAMES, g1, g2):
        assert torch.equal(u, v), f"d{name} differs between two identical autograd backward runs"


def test_public_op_backend_triton():
    assert "triton" in lgf_ops.available_backends()
    inputs = make_inputs(2, 4, 5, 5, channels_last=True, seed=8)

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


@pytest.mark.skipif(DEVICE != "cpu", reason="checks the CPU-without-interpreter error")
def test_cpu_tensors_without_interpreter_raise(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        K.lgf_forward(*make_inputs(1, 2, 3, 3))


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_opcheck(channels_last):
    inputs = leaves(make_inputs(1, 3, 4, 4, channels_last=channels_last, seed=9))
    torch.library.opcheck(torch.ops.lgf_triton.fused_forward.default, tuple(inputs))
    dy = torch.randn(inputs[0].shape, device=DEVICE)
    torch.library.opcheck(
        torch.ops.lgf_triton.fused_backward.default, (dy, *[t.detach() for t in inputs])
    )


_LOWERING_SCRIPT = r"""
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from lgf_ops import triton_kernels as K

DATA = {"x_ptr", "y_ptr", "g_ptr", "dy_ptr", "dx_ptr"}

def lower(kernel, data, acc, constexprs):
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*" + (data if name in DATA else acc)
        else:
            sig[name] = "i32"
    k = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", 80, 32))
    assert k.asm.get("cubin"), "no cubin produced"
    print("lowered", kernel.fn.__name__, data, sorted(constexprs))

lower(K._lgf_fwd_kernel, "fp32", "fp32", {"ACC": tl.float32, "BLOCK_C": 4, "BLOCK_P": 256})
lower(K._lgf_bwd_kernel, "fp32", "fp32", {"ACC": tl.float32, "BLOCK_C": 2, "BLOCK_P": 128, "NUM_SLOTS": 16})
# channels_last bf16: unit channel strides are specialised to constexpr 1 by Triton's launcher
lower(K._lgf_bwd_kernel, "bf16", "fp32", {"ACC": tl.float32, "BLOCK_C": 32, "BLOCK_P": 8, "NUM_SLOTS": 16,
                                          "sdyc": 1, "sxc": 1, "sdxc": 1})
"""


@pytest.mark.skipif(
    DEVICE != "cpu", reason="on a GPU the other tests compile and run the real kernels"
)
def test_kernels_lower_to_gpu_code(tmp_path):
    """The interpreter does not run Triton's compiler; lower the kernels to sm_80 cubin (no GPU is
    needed for that) in a subprocess without TRITON_INTERPRET, so GPU-only compile errors show here."""
    import os
    import subprocess
    import sys

    pytest.importorskip("triton.backends.nvidia", reason="Triton's NVIDIA backend is not installed")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _LOWERING_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"lowering failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.stdout.count("lowered") == 3, proc.stdout


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
