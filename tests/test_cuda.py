"""The CUDA kernels of lgf::fused_forward / lgf::fused_backward (csrc/cuda).

Three groups:
  * build checks (always run): when a CUDA toolkit is present the extension must carry CUDA
    kernels for both ops (a CPU-only build then is a failure, unless LGF_BUILD_CUDA=0);
  * emulated execution (always run, needs a host C++ compiler): the device code of csrc/cuda is
    compiled for the CPU with csrc/cuda/emulate/cuda_emulation.h (block threads as fibers,
    __syncthreads as a barrier that exposes missing ones) and checked against the reference with
    the launch plans of the real wrappers;
  * on a GPU (skipped without one): the registered kernels through lgf_ops.lgf_fused.
"""

import ctypes
import os
import shlex
import shutil
import subprocess

import pytest
import torch
from op_utils import GRAD_NAMES, TOL, assert_close_scaled, forward_and_grads, make_inputs

import lgf_ops
from lgf_ops import _cpp
from lgf_ops.reference import lgf_fused_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(REPO, "csrc")
NUM_SLOTS = 16  # lgf_math.h PartialSlot

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
LAYOUTS = ["nchw", "channels_last", "permuted", "strided"]


def _nvcc_path():
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return os.path.join(home, "bin", "nvcc")
    return None


def _has_cuda_kernel(op):
    return _cpp._C is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        f"lgf::{op}", "CUDA"
    )


# ---------------------------------------------------------------------------------------------
# Build checks


def test_cuda_kernels_built_when_the_toolkit_is_present():
    if os.environ.get("LGF_BUILD_CUDA", "").strip() == "0":
        pytest.skip("LGF_BUILD_CUDA=0: the extension is built without CUDA on purpose")
    nvcc = _nvcc_path()
    if nvcc is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine: the extension is CPU-only by design")
    assert _cpp._C is not None, (
        f"nvcc exists at {nvcc} but lgf_ops._C did not load: {_cpp.load_error()}"
    )
    for op in ("fused_forward", "fused_backward"):
        assert _has_cuda_kernel(op), (
            f"nvcc exists at {nvcc} but lgf::{op} has no CUDA kernel: the extension was built without "
            "csrc/cuda (rebuild it, or set LGF_BUILD_CUDA=0 to build and test CPU-only on purpose)"
        )
    assert "cuda" in lgf_ops.available_backends()


def test_cuda_registration_is_consistent():
    """Both ops or neither have a CUDA kernel, and available_backends() says which."""
    fwd, bwd = _has_cuda_kernel("fused_forward"), _has_cuda_kernel("fused_backward")
    assert fwd == bwd
    assert ("cuda" in lgf_ops.available_backends()) == fwd


# ---------------------------------------------------------------------------------------------
# Emulated execution of the device code on the CPU

DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
I64 = ctypes.c_int64


@pytest.fixture(scope="session")
def emu(tmp_path_factory):
    """csrc/cuda/emulate/emulate_kernels.cpp built with the host compiler, loaded with ctypes."""
    cxx = shlex.split(os.environ.get("CXX", "")) or [
        c for c in (shutil.which("g++") or shutil.which("c++"),) if c
    ]
    if not cxx:
        pytest.skip("no host C++ compiler (g++/c++) to build the CUDA emulation")
    out = str(tmp_path_factory.mktemp("lgf_emu") / "lgf_emu.so")
    src = os.path.join(CSRC, "cuda", "emulate", "emulate_kernels.cpp")
    torch_include = os.path.join(os.path.dirname(torch.__file__), "include")
    cmd = cxx + [
        "-std=c++20",
        "-O2",
        "-shared",
        "-fPIC",
        "-I",
        CSRC,
        "-I",
        torch_include,
        src,
        "-o",
        out,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, (
        f"building the CUDA emulation failed:\n{' '.join(cmd)}\n{res.stderr[-4000:]}"
    )
    lib = ctypes.CDLL(out)
    lib.lgf_emu_ws_tiles.restype = I64
    lib.lgf_emu_ws_tiles.argtypes = [ctypes.c_int, ctypes.c_int, I64, I64, I64, I64]
    return lib


def _strides(t):
    return (I64 * 4)(*t.stride())


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr())


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _params(weight, bias, g, gate, gamma, acc):
    """The parameters as the wrappers pass them: compute dtype, contiguous, in DevParams order."""
    keep = [t.detach().to(acc).contiguous() for t in (weight, bias, gate, gamma, g)]
    return keep, (ctypes.c_void_p * 5)(*[t.data_ptr() for t in keep])


def _empty_out(x):
    fmt = _cpp.output_memory_format(x)
    return torch.full_like(x.detach(), float("nan"), memory_format=fmt)  # NaN: unwritten shows up


def emu_forward(lib, x, weight, bias, g, gate, gamma, grid=0, reverse=False):
    x = x.detach()
    keep, ptrs = _params(weight, bias, g, gate, gamma, _acc(x.dtype))
    y = _empty_out(x)
    err = ctypes.create_string_buffer(1024)
    nhwc = int(_cpp.output_memory_format(x) == torch.channels_last)
    rc = lib.lgf_emu_forward(
        DTYPE_CODE[x.dtype],
        _ptr(x),
        _strides(x),
        _ptr(y),
        _strides(y),
        ptrs,
        *map(I64, x.shape),
        nhwc,
        I64(grid),
        int(reverse),
        err,
        1024,
    )
    assert rc == 0, err.value.decode()
    return y


def emu_backward(lib, dy, x, weight, bias, g, gate, gamma, grid=0, reverse=False):
    """dx and the raw workspace (N*C, NUM_SLOTS, tiles) of the backward kernels."""
    x, dy = x.detach(), dy.detach()
    acc = _acc(x.dtype)
    keep, ptrs = _params(weight, bias, g, gate, gamma, acc)
    dx = _empty_out(x)
    N, C, H, W = x.shape
    nhwc = int(_cpp.output_memory_format(x) == torch.channels_last)
    tiles = lib.lgf_emu_ws_tiles(DTYPE_CODE[x.dtype], nhwc, N, C, H, W)
    ws = torch.full((N * C, NUM_SLOTS, tiles), float("nan"), dtype=acc)
    err = ctypes.create_string_buffer(1024)
    rc = lib.lgf_emu_backward(
        DTYPE_CODE[x.dtype],
        _ptr(dy),
        _strides(dy),
        _ptr(x),
        _strides(x),
        _ptr(dx),
        _strides(dx),
        ptrs,
        _ptr(ws),
        *map(I64, x.shape),
        nhwc,
        I64(grid),
        int(reverse),
        err,
        1024,
    )
    assert rc == 0, err.value.decode()
    return dx, ws


def finalize(ws, x, weight, g, gate):
    """What the CUDA wrapper does after the kernel: ws.sum over tiles, then the arithmetic of
    lgf::finalize_param_grads (csrc/lgf_ops.cpp), written out here to check the slot contents."""
    N, C = x.shape[:2]
    P = ws.sum(2).view(N, C, NUM_SLOTS)
    gate_a, g_a = gate.detach().to(P.dtype), g.detach().to(P.dtype)
    dzl, dzg = P[..., 2], P[..., 3]
    dg = P[..., 1] + gate_a[1] * dzl + gate_a[4] * dzg
    dgate = torch.stack(
        [
            P[..., 4].sum(0),
            (g_a * dzl).sum(0),
            dzl.sum(0),
            P[..., 5].sum(0),
            (g_a * dzg).sum(0),
            dzg.sum(0),
        ]
    )
    pd = weight.dtype
    dweight = P[..., 7:16].sum(0).reshape(C, 1, 3, 3)
    return (
        dweight.to(pd),
        P[..., 6].sum(0).to(pd),
        dg.to(g.dtype),
        dgate.to(pd),
        P[..., 0].sum(0).to(pd),
    )


def check_emulated(lib, inputs, tol, dy=None, **launch):
    if dy is None:
        dy = torch.randn(inputs[0].shape, dtype=torch.float64).to(inputs[0].dtype)
    y_ref, grads_ref = forward_and_grads(lgf_fused_reference, inputs, dy)
    y = emu_forward(lib, *inputs, **launch)
    dx, ws = emu_backward(lib, dy, *inputs, **launch)
    assert_close_scaled(y, y_ref, tol, "y")
    grads = (dx,) + finalize(ws, inputs[0], inputs[1], inputs[3], inputs[4])
    for name, a, e in zip(GRAD_NAMES, grads, grads_ref):
        assert_close_scaled(a, e, tol, f"d{name}")
    return y, dx, ws


def test_emulation_exposes_missing_and_divergent_barriers(emu):
    """The emulation is a real check: a read racing a neighbour's write without a barrier sees
    the stale value, and a barrier reached by part of a block is an error."""
    assert emu.lgf_emu_selftest_race(1) == 0
    assert emu.lgf_emu_selftest_race(0) > 0
    assert emu.lgf_emu_selftest_divergence() == 1


# Small shapes: several tiles in both directions and a partial channel block, H = 1, W = 1, 2x2.
EMU_SHAPES = [(2, 3, 37, 41), (2, 5, 1, 9), (1, 2, 6, 1), (1, 3, 2, 2)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", EMU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_emulated_kernels_match_reference(emu, shape, layout, dtype):
    torch.manual_seed(0)
    inputs = make_inputs(*shape, dtype=dtype, layout=layout)
    check_emulated(emu, inputs, TOL[dtype])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_kernels_multiple_strips_and_channel_blocks(emu, layout):
    """H = 70 gives two backward strips in both layouts; C = 35 is not a multiple of any
    channel block (32/16/8); W = 41 spans two (NCHW) or three (NHWC) tile columns."""
    torch.manual_seed(0)
    inputs = make_inputs(1, 35, 70, 41, dtype=torch.float32, layout=layout)
    check_emulated(emu, inputs, TOL[torch.float32])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_emulated_low_precision_x_with_float32_parameters(emu, layout, dtype):
    inputs = make_inputs(2, 19, 9, 21, dtype=dtype, layout=layout, param_dtype=torch.float32)
    check_emulated(emu, inputs, TOL[dtype])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_stride_zero_upstream_gradient(emu, layout):
    inputs = make_inputs(2, 6, 19, 35, dtype=torch.float64, layout=layout)
    dy = torch.ones((), dtype=torch.float64).expand(
        inputs[0].shape
    )  # what .sum().backward() passes
    assert dy.stride() == (0, 0, 0, 0)
    check_emulated(emu, inputs, TOL[torch.float64], dy=dy)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_results_do_not_depend_on_grid_or_thread_order(emu, layout):
    """Bitwise the same y, dx and workspace whatever the number of blocks (the grid-stride loops)
    and the order the threads of a block run in: the reduction order is fixed by the data."""
    inputs = make_inputs(1, 11, 37, 41, dtype=torch.float32, layout=layout)
    dy = torch.randn(inputs[0].shape)
    y0 = emu_forward(emu, *inputs)
    dx0, ws0 = emu_backward(emu, dy, *inputs)
    assert torch.isfinite(ws0).all() and torch.isfinite(dx0).all()
    for grid, reverse in ((1, False), (3, True), (0, True)):
        y = emu_forward(emu, *inputs, grid=grid, reverse=reverse)
        dx, ws = emu_backward(emu, dy, *inputs, grid=grid, reverse=reverse)
        assert torch.equal(y, y0) and torch.equal(dx, dx0) and torch.equal(ws, ws0), (grid, reverse)


# ---------------------------------------------------------------------------------------------
# On a GPU


def _gpu_skip_reason():
    if not torch.cuda.is_available():
        return "no CUDA device: the CUDA kernels can only run on a GPU"
    if not _has_cuda_kernel("fused_forward"):
        return "lgf_ops._C was built without CUDA kernels"
    return None


on_gpu = pytest.mark.skipif(_gpu_skip_reason() is not None, reason=str(_gpu_skip_reason()))


def cuda_op(*args):
    return lgf_ops.lgf_fused(*args, backend="cuda")


def cuda_inputs(*shape, **kw):
    return make_inputs(*shape, device="cuda", **kw)


def check_cuda_parity(inputs, tol, dy=None):
    y_ref = lgf_fused_reference(*inputs)
    dy = torch.randn_like(y_ref) if dy is None else dy
    y, grads = forward_and_grads(cuda_op, inputs, dy)
    _, grads_ref = forward_and_grads(lgf_fused_reference, inputs, dy)
    assert_close_scaled(y, y_ref, tol, "y")
    for name, a, e in zip(GRAD_NAMES, grads, grads_ref):
        assert_close_scaled(a, e, tol, f"d{name}")
    return y, grads


GPU_SHAPES = [
    (0, 5, 7, 7),
    (1, 5, 1, 33),
    (3, 37, 7, 1),
    (2, 67, 33, 45),
    (1, 130, 70, 41),
    (2, 3, 1, 1),
]


@on_gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", GPU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cuda_parity_with_reference(shape, layout, dtype):
    torch.manual_seed(1)
    inputs = cuda_inputs(*shape, dtype=dtype, layout=layout)
    y, grads = check_cuda_parity(inputs, TOL[dtype])
    fmt = _cpp.output_memory_format(inputs[0])
    assert y.is_contiguous(memory_format=fmt) and grads[0].is_contiguous(memory_format=fmt)
    assert y.device.type == "cuda"


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_cuda_low_precision_x_with_float32_parameters(layout, dtype):
    inputs = cuda_inputs(2, 40, 9, 11, dtype=dtype, layout=layout, param_dtype=torch.float32)
    _, grads = check_cuda_parity(inputs, TOL[dtype])
    assert all(gr.dtype == torch.float32 for gr in (grads[1], grads[2], grads[4], grads[5]))


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "permuted"])
def test_cuda_gradcheck_fp64(layout):
    inputs = cuda_inputs(1, 3, 5, 6, dtype=torch.float64, layout=layout)
    assert torch.autograd.gradcheck(cuda_op, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_backward_bitwise_deterministic(layout):
    inputs = cuda_inputs(2, 48, 75, 83, dtype=torch.float32, layout=layout)
    dy = torch.randn(inputs[0].shape, device="cuda")
    _, first = forward_and_grads(cuda_op, inputs, dy)
    for _ in range(3):
        _, again = forward_and_grads(cuda_op, inputs, dy)
        for name, a, b in zip(GRAD_NAMES, first, again):
            assert torch.equal(a, b), f"d{name} differs between runs"


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_stride_zero_upstream_gradient(layout):
    inputs = cuda_inputs(2, 6, 19, 35, dtype=torch.float32, layout=layout)
    dy = torch.ones((), device="cuda").expand(inputs[0].shape)
    check_cuda_parity(inputs, TOL[torch.float32], dy=dy)
    y = cuda_op(*inputs)
    grads = torch.autograd.grad(y.sum(), inputs)
    ref = torch.autograd.grad(lgf_fused_reference(*inputs).sum(), inputs)
    for name, a, e in zip(GRAD_NAMES, grads, ref):
        assert_close_scaled(a, e, TOL[torch.float32], f"d{name}")


@on_gpu
def test_cuda_torch_compile_fullgraph_forward_backward():
    inputs = cuda_inputs(2, 8, 12, 10, dtype=torch.float32)
    dy = torch.randn(inputs[0].shape, device="cuda")

    def f(*args):
        return lgf_ops.lgf_fused(*args, backend="cuda") * 2.0

    compiled = torch.compile(f, fullgraph=True)
    y, grads = forward_and_grads(compiled, inputs, dy)
    y_ref, grads_ref = forward_and_grads(lambda *a: lgf_fused_reference(*a) * 2.0, inputs, dy)
    assert_close_scaled(y, y_ref, TOL[torch.float32], "y")
    for name, a, e in zip(GRAD_NAMES, grads, grads_ref):
        assert_close_scaled(a, e, TOL[torch.float32], f"d{name}")


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_cuda_matches_cpu_kernel_on_a_large_map(layout):
    if "cpp" not in lgf_ops.available_backends():
        pytest.skip("the C++ CPU kernel is not built")
    inputs = make_inputs(2, 64, 160, 160, dtype=torch.float32, layout=layout)
    dy = torch.randn(inputs[0].shape)
    y_cpu, g_cpu = forward_and_grads(lambda *a: lgf_ops.lgf_fused(*a, backend="cpp"), inputs, dy)
    gpu_in = [t.detach().cuda().requires_grad_() for t in inputs]
    y_gpu, g_gpu = forward_and_grads(cuda_op, gpu_in, dy.cuda())
    assert_close_scaled(y_gpu.cpu(), y_cpu, 1e-4, "y")
    for name, a, e in zip(GRAD_NAMES, g_gpu, g_cpu):
        assert_close_scaled(a.cpu(), e, 1e-4, f"d{name}")


@on_gpu
def test_cuda_auto_backend_and_device_errors():
    inputs = cuda_inputs(1, 4, 5, 5, dtype=torch.float32)
    assert lgf_ops.resolve_backend("auto", inputs[0].device) == "cuda"
    bad = list(t.detach() for t in inputs)
    bad[1] = bad[1].cpu()
    with pytest.raises(RuntimeError, match="device"):
        torch.ops.lgf.fused_forward(*bad)


@on_gpu
def test_cuda_index_arithmetic_is_64bit():
    """More than 2^31 elements: y and dx at the far end of the tensor match the reference."""
    N, C, H, W = 1, 3, 32768, 21850  # 2.15e9 elements of fp16
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * 2**30:
        pytest.skip(f"needs 16 GiB of free GPU memory, {free / 2**30:.1f} GiB free")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(N, C, H, W, device="cuda", dtype=torch.float16, generator=gen)
    assert x.numel() > 2**31
    weight, bias, g, gate, gamma = (
        t.detach() for t in cuda_inputs(N, C, 1, 1, dtype=torch.float16)[1:]
    )
    y = torch.ops.lgf.fused_forward(x, weight, bias, g, gate, gamma)
    crop = x[:, :, H - 6 :, :]
    y_ref = lgf_fused_reference(crop, weight, bias, g, gate, gamma)
    assert_close_scaled(y[:, :, H - 5 :, :], y_ref[:, :, 1:, :], TOL[torch.float16], "y tail")
    del y
    dy = torch.ones((), device="cuda", dtype=torch.float16).expand(x.shape)
    dx = torch.ops.lgf.fused_backward(dy, x, weight, bias, g, gate, gamma)[0]
    crop_in = crop.detach().requires_grad_()
    (dx_ref,) = torch.autograd.grad(
        lgf_fused_reference(crop_in, weight, bias, g, gate, gamma).sum(), crop_in
    )
    assert_close_scaled(dx[:, :, H - 4 :, :], dx_ref[:, :, 2:, :], TOL[torch.float16], "dx tail")
