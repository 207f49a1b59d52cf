"""The CUDA kernels of lgf::fused_forward / lgf::fused_backward (csrc/cuda).

Three groups:
  * build checks (always run): when a CUDA toolkit is present the extension must carry CUDA
    kernels for both ops (a CPU-only build then is a failure, unless LGF_BUILD_CUDA=0);
  * emulated execution (always run, needs a host C++ compiler): the device code of csrc/cuda is
    compiled for the CPU with tests/cuda_emulation/cuda_emulation.h (block threads as fibers,
    __syncthreads as a barrier that exposes missing ones, shared memory NaN at every block start)
    and checked against the reference with the launch plans of the real wrappers;
  * on a GPU (skipped without one): the registered kernels through lgf_ops.lgf_fused.
"""

import os
import subprocess
import sys

import pytest
import torch
from emulation import (
    I64,
    build_emulation,
    emu_backward,
    emu_forward,
    host_cxx,
    shared_emulation,
)
from op_utils import GRAD_NAMES, TOL, assert_close_scaled, forward_and_grads, make_inputs

import lgf_ops
from lgf_ops import _cpp
from lgf_ops.reference import lgf_fused_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
            f"nvcc exists at {nvcc} but lgf::{op} has no CUDA kernel: the extension was built "
            "without csrc/cuda (rebuild it, or set LGF_BUILD_CUDA=0 to build and test CPU-only on "
            "purpose)"
        )
    assert "cuda" in lgf_ops.available_backends()


def test_cuda_registration_is_consistent():
    """Both ops or neither have a CUDA kernel, and available_backends() says which."""
    fwd, bwd = _has_cuda_kernel("fused_forward"), _has_cuda_kernel("fused_backward")
    assert fwd == bwd
    assert ("cuda" in lgf_ops.available_backends()) == fwd


# ---------------------------------------------------------------------------------------------
# Emulated execution of the device code on the CPU


@pytest.fixture(scope="session")
def emu():
    return shared_emulation()


def check_emulated(lib, inputs, tol, dy=None, **launch):
    if dy is None:
        dy = torch.randn(inputs[0].shape, dtype=torch.float64).to(inputs[0].dtype)
    y_ref, grads_ref = forward_and_grads(lgf_fused_reference, inputs, dy)
    y = emu_forward(lib, *inputs, **{k: v for k, v in launch.items() if k != "target_blocks"})
    dx, grads, ws = emu_backward(lib, dy, *inputs, **launch)
    assert_close_scaled(y, y_ref, tol, "y")
    for name, a, e in zip(GRAD_NAMES, (dx,) + grads, grads_ref):
        assert_close_scaled(a, e, tol, f"d{name}")
    return y, (dx,) + grads, ws


def test_emulation_exposes_missing_and_divergent_barriers(emu):
    """The emulation is a real check: a read racing a neighbour's write without a barrier sees
    the stale value, and a barrier reached by part of a block is an error."""
    assert emu.lgf_emu_selftest_race(1) == 0
    assert emu.lgf_emu_selftest_race(0) > 0
    assert emu.lgf_emu_selftest_divergence() == 1


def test_emulation_fills_shared_memory_with_nan_at_every_block(emu):
    """A read of shared memory that no thread of the block wrote is NaN, even after an earlier
    block wrote there (zero-filled memory would hide such reads)."""
    assert emu.lgf_emu_selftest_smem_fill() == 0


def test_fast_division_is_exact(emu):
    """FastDiv (tile_plan.cuh) decodes block and thread indices: exact for every divisor the
    plans use (at most a few thousand) over small numerators, around multiples, and near 2^31."""
    assert emu.lgf_emu_selftest_fast_div(3000) == 0


def _python_plans():
    """benchmarks/static/cuda_plans.py: the static report's mirror of the launch plans."""
    bench = os.path.join(REPO, "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from static import cuda_plans

    return cuda_plans


PLAN_SHAPES = [
    (2, 512, 80, 80),
    (16, 256, 160, 160),
    (1, 3, 1, 1),
    (2, 35, 70, 300),
    (1, 64, 1000, 7),
    (4, 7, 33, 129),
    (1, 1, 2049, 2049),
    (3, 40, 100, 167),
]


@pytest.mark.parametrize("elem", [2, 4, 8])
def test_static_report_plans_mirror_the_launch_plans(emu, elem):
    """The static report (benchmarks/gpu_static.py) computes the kernels' tiles in Python; they
    must be the ones csrc/cuda/tile_plan.cuh launches."""
    cp = _python_plans()
    out = (I64 * 12)()
    for shape in PLAN_SHAPES:
        for backward in (0, 1):
            emu.lgf_emu_plan(0, backward, elem, *map(I64, shape), out)
            p = cp.nchw_plan(bool(backward), elem, 8 if elem == 8 else 4, *shape)
            g = p.grid
            mine = [p.threads, p.th, p.tw, g.tiles_h, g.tiles_w, g.strip_len, g.strips, g.items]
            mine += [g.partials, p.smem_bytes, int(p.chunked), p.rp]
            assert list(out) == mine, ("nchw", shape, backward)
            emu.lgf_emu_plan(1, backward, elem, *map(I64, shape), out)
            cb = cp.nhwc_backward_cb(elem) if backward else cp.nhwc_forward_cb(elem)
            q = cp.nhwc_plan(bool(backward), cb, elem, 8 if elem == 8 else 4, *shape)
            g = q.grid
            mine = [256, 16, 16, g.tiles_h, g.tiles_w, g.strip_len, g.strips, g.items]
            mine += [g.partials, q.smem_bytes, 0, 0]
            assert list(out) == mine, ("nhwc", shape, backward)


# Small shapes: several tiles in both directions and a partial channel block, H = 1, W = 1, 2x2.
EMU_SHAPES = [(2, 3, 37, 41), (2, 5, 1, 9), (1, 2, 6, 1), (1, 3, 2, 2)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", EMU_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_emulated_kernels_match_reference(emu, shape, layout, dtype):
    torch.manual_seed(0)
    inputs = make_inputs(*shape, dtype=dtype, layout=layout)
    check_emulated(emu, inputs, TOL[dtype])


def _vec(dtype):
    """Elements per 16-byte vector: the outputs per thread along a row of the NCHW kernels."""
    return 16 // torch.empty((), dtype=dtype).element_size()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("delta", [-1, 0, 1, 3])
def test_emulated_widths_around_the_vector(emu, dtype, delta):
    """Rows of V - 1 .. 2V + 1 columns (V outputs per thread): ragged ends of the 16-byte path and
    the element-wise path, in both layouts (channels_last: C around the vector instead)."""
    V = _vec(dtype)
    for n in (V + delta, 2 * V + delta):
        if n < 1:
            continue
        for layout, shape in (("nchw", (2, 3, 6, n)), ("channels_last", (1, n, 5, 3))):
            inputs = make_inputs(*shape, dtype=dtype, layout=layout)
            check_emulated(emu, inputs, TOL[dtype])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_emulated_kernels_multiple_tiles_strips_and_channel_blocks(emu, layout, dtype):
    """W = 300 needs two (fp32) or three (fp64) NCHW tile columns of at most 64 vectors, and 19
    NHWC ones; H = 70 several tile rows; C = 35 is not a multiple of any channel block."""
    torch.manual_seed(0)
    inputs = make_inputs(1, 35, 70, 300, dtype=dtype, layout=layout)
    check_emulated(emu, inputs, TOL[dtype])


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_long_strips_sum_like_short_ones(emu, layout):
    """A block walking the whole column of tiles (target_blocks=1) and blocks of one tile each
    give the same y and dx bitwise and the same parameter gradients up to summation order."""
    inputs = make_inputs(2, 3, 200, 20, dtype=torch.float64, layout=layout)  # 3 NCHW tile rows
    dy = torch.randn(inputs[0].shape, dtype=torch.float64)
    _, long, ws_long = check_emulated(emu, inputs, TOL[torch.float64], dy=dy, target_blocks=1)
    _, short, ws_short = check_emulated(emu, inputs, TOL[torch.float64], dy=dy, target_blocks=10**6)
    assert ws_short.numel() > ws_long.numel()  # really different strips
    assert torch.equal(long[0], short[0])
    for name, a, b in zip(GRAD_NAMES[1:], long[1:], short[1:]):
        assert_close_scaled(a, b, 1e-12, f"d{name}")


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
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_emulated_upstream_gradient_in_the_other_layout(emu, layout, dtype):
    """dy channels_last for NCHW x and the reverse (the kernels read it through its strides;
    the CUDA wrapper copies it to x's layout first, for coalescing), and a dy broadcast along
    N only (stride 0 there, contiguous inside each image)."""
    inputs = make_inputs(2, 6, 11, 13, dtype=dtype, layout=layout)
    other = torch.channels_last if layout == "nchw" else torch.contiguous_format
    dy = torch.randn(inputs[0].shape, dtype=torch.float64).to(dtype)
    check_emulated(emu, inputs, TOL[dtype], dy=dy.contiguous(memory_format=other))
    fmt = _cpp.output_memory_format(inputs[0])
    dy_n = torch.randn((1, *inputs[0].shape[1:]), dtype=torch.float64).to(dtype)
    check_emulated(
        emu, inputs, TOL[dtype], dy=dy_n.contiguous(memory_format=fmt).expand(2, -1, -1, -1)
    )


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_emulated_results_do_not_depend_on_block_or_thread_order(emu, layout):
    """Bitwise the same y, dx, workspace and gradients whatever order the blocks and the
    threads of a block run in: the reduction order is fixed by the data."""
    inputs = make_inputs(1, 11, 37, 41, dtype=torch.float32, layout=layout)
    dy = torch.randn(inputs[0].shape)
    y0 = emu_forward(emu, *inputs)
    dx0, g0, ws0 = emu_backward(emu, dy, *inputs)
    assert torch.isfinite(ws0).all() and torch.isfinite(dx0).all()
    for rt, rb in ((True, False), (False, True), (True, True)):
        y = emu_forward(emu, *inputs, reverse_threads=rt, reverse_blocks=rb)
        dx, g, ws = emu_backward(emu, dy, *inputs, reverse_threads=rt, reverse_blocks=rb)
        assert torch.equal(y, y0) and torch.equal(dx, dx0) and torch.equal(ws, ws0), (rt, rb)
        assert all(torch.equal(a, b) for a, b in zip(g, g0)), (rt, rb)


def test_emulated_empty_batch_gives_zero_parameter_gradients(emu):
    """N = 0: no main kernel block runs, the finalize kernel writes zero gradients."""
    inputs = make_inputs(0, 5, 7, 7, dtype=torch.float32)
    dx, grads, ws = emu_backward(emu, torch.randn(0, 5, 7, 7), *inputs)
    assert dx.shape == (0, 5, 7, 7) and ws.numel() == 0
    for name, gr in zip(GRAD_NAMES[1:], grads):
        assert torch.equal(gr, torch.zeros_like(gr)), name


ASAN_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests!r})
import test_cuda as t
from emulation import load_emulation
from op_utils import TOL, make_inputs

lib = load_emulation({lib!r})
for dtype in t.DTYPES:
    for layout in t.LAYOUTS:
        for shape in ((2, 5, 9, 19), (2, 8, 9, 16)):  # element-wise and 16-byte paths
            t.check_emulated(lib, make_inputs(*shape, dtype=dtype, layout=layout), TOL[dtype])
for layout in ("nchw", "channels_last"):
    inputs = make_inputs(1, 3, 7, 9, dtype=torch.float64, layout=layout)
    dy = torch.ones((), dtype=torch.float64).expand(inputs[0].shape)
    t.check_emulated(lib, inputs, TOL[torch.float64], dy=dy)
print("asan-ok")
"""


def test_emulated_kernels_under_address_sanitizer(tmp_path):
    """Reads or writes outside the tensors (or of freed memory) by the device code, found by
    AddressSanitizer: the emulation built with -fsanitize=address runs every dtype and layout
    in a fresh interpreter with the ASan runtime preloaded (Python itself is not built with
    ASan), and any report fails the run."""
    cxx = host_cxx()
    if not cxx:
        pytest.skip("no host C++ compiler (g++/c++) to build the CUDA emulation")

    def runtime_file(name):
        found = subprocess.run(cxx + [f"-print-file-name={name}"], capture_output=True, text=True)
        path = found.stdout.strip()
        return path if os.path.isabs(path) and os.path.exists(path) else None

    asan = runtime_file("libasan.so")
    if asan is None:
        pytest.skip(f"{cxx[0]} has no AddressSanitizer runtime (libasan.so)")
    # libstdc++ preloaded too: ASan's C++ exception interceptor needs it at start-up (without it,
    # the first exception thrown while importing lgf_ops' dependencies aborts the interpreter).
    preload = " ".join(p for p in (asan, runtime_file("libstdc++.so.6")) if p)
    flags = ["-fsanitize=address", "-fno-omit-frame-pointer", "-O1"]
    lib = build_emulation(tmp_path / "lgf_emu_asan.so", flags)
    script = ASAN_SCRIPT.format(tests=os.path.join(REPO, "tests"), lib=lib)
    env = dict(os.environ, LD_PRELOAD=preload, ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    res = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=1200
    )
    assert res.returncode == 0 and "asan-ok" in res.stdout, res.stdout[-2000:] + res.stderr[-6000:]


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
    (2, 40, 32, 32),  # whole 16 x 16 NHWC tiles, whole-vector NCHW rows (the 16-byte paths)
    (1, 24, 21, 300),  # NCHW rows wider than one tile (fp32 / fp64: two or more tile columns)
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
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cuda_upstream_gradient_in_the_other_layout(layout, dtype):
    """The wrapper copies a dy whose layout differs from x's (for coalescing); the result is the
    reference's."""
    inputs = cuda_inputs(2, 16, 19, 35, dtype=dtype, layout=layout)
    other = torch.channels_last if layout == "nchw" else torch.contiguous_format
    dy = torch.randn(inputs[0].shape, device="cuda", dtype=dtype).contiguous(memory_format=other)
    check_cuda_parity(inputs, TOL[dtype], dy=dy)


def _cuda_kernel_launches(fn):
    """Kernels (not copies or fills) that fn launches, by the profiler."""
    from torch.autograd import DeviceType

    fn()  # warm-up: first-call allocations and lazy initialisation are not counted
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [
        e.name
        for e in prof.events()
        if e.device_type == DeviceType.CUDA and not e.name.lower().startswith(("memcpy", "memset"))
    ]


@on_gpu
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_cuda_launches_one_forward_and_two_backward_kernels(layout, dtype):
    """Forward = 1 kernel; backward = the main kernel + the finalize kernel (no ATen reductions,
    no parameter conversions), with dy in x's layout."""
    x, *params = (t.detach() for t in cuda_inputs(2, 64, 40, 40, dtype=dtype, layout=layout))
    dy = torch.randn_like(x)
    assert dy.is_contiguous(memory_format=_cpp.output_memory_format(x))
    fwd = _cuda_kernel_launches(lambda: torch.ops.lgf.fused_forward(x, *params))
    bwd = _cuda_kernel_launches(lambda: torch.ops.lgf.fused_backward(dy, x, *params))
    assert len(fwd) == 1, fwd
    assert len(bwd) == 2, bwd


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
