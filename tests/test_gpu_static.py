"""The static GPU-speed report (benchmarks/gpu_static.py and benchmarks/static/): no GPU needed.

The SASS counter is checked on hand-written listings whose counts are known; the plans are
checked to fail loudly when they and the binaries disagree; the tool itself runs on a subset of
the variants (the CUDA rows need an extension built with CUDA kernels, the Triton rows need
triton: where either is missing the tool must say so, and this test checks that it does).
"""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from static import aten_ops, counting, gpus, plan_api, sass, traffic  # noqa: E402

REQUIRED_KEYS = {
    "backend", "direction", "dtype", "layout", "shape", "gpu", "regs", "spill_bytes",
    "occupancy", "instr_per_output", "launches", "workspace_bytes", "memory_us", "issue_us",
    "est_us", "roofline_us",
}  # fmt: skip


def listing(body: str, name: str = "toy_kernel", arch: str = "sm_90") -> str:
    """A cuobjdump -sass style listing from 'addr text' lines (encodings left out)."""
    lines = [f"\tcode for {arch}", f"\t\tFunction : {name}"]
    for line in body.strip().splitlines():
        addr, text = line.split(None, 1)
        lines.append(f"        /*{int(addr, 16):04x}*/                   {text} ;")
        lines.append("                                 /* 0x000fe20000000f00 */")
    return "\n".join(lines) + "\n"


# A loop of 5 instructions (0x40-0x80), then an outlined slow path behind a conditional branch
# (0xa0-0xc0, cold), a store, EXIT, the BRA-to-self padding and a 2-instruction subroutine.
TOY = """
0000 MOV R1, c[0x0][0x28]
0010 S2R R0, SR_TID.X
0020 ISETP.GE.AND P0, PT, R0, 0x10, PT
0030 @P0 EXIT
0040 IADD3 R2, R2, 0x1, RZ
0050 LDG.E R3, desc[UR4][R4.64]
0060 FADD R5, R5, R3
0070 ISETP.GE.AND P1, PT, R2, 0x100, PT
0080 @!P1 BRA 0x40
0090 @P2 BRA 0xd0
00a0 MOV R4, R5
00b0 CALL.REL.NOINC 0x100
00c0 BRA 0xd0
00d0 STG.E desc[UR4][R6.64], R5
00e0 EXIT
00f0 BRA 0xf0
0100 FMUL R5, R5, R5
0110 RET.REL.NODEC R4 0x0
"""


def test_sass_counts_a_loop_body_times_its_trips_and_skips_a_slow_path():
    (fn,) = sass.parse_sass(listing(TOY))
    a = counting.analyse(fn)
    assert [(lp.first, lp.last, lp.own_instrs) for lp in a.loops] == [(0x40, 0x80, 5)]
    assert a.loops[0].ops["LDG"] == 1
    assert a.top_instrs == 4 + 1 + 2  # 0x00-0x30, the branch at 0x90, 0xd0-0xe0
    assert a.cold_instrs == 3  # 0xa0-0xc0: the conditional CALL's block
    assert a.instructions_per_thread([10]) == 7 + 10 * 5
    assert a.instructions_per_thread([0.5]) == 7 + 2.5


def test_sass_unconditional_call_counts_the_callee():
    body = TOY.replace("0090 @P2 BRA 0xd0", "0090 NOP")
    (fn,) = sass.parse_sass(listing(body))
    a = counting.analyse(fn)
    assert a.cold_instrs == 0
    assert a.hot_calls == [(0xB0, 2)]
    assert a.top_instrs == 4 + 1 + 3 + 2 + 2  # ... + 0x90-0xc0 + callee + 0xd0-0xe0


def test_sass_nested_loops_and_sm80_call_used_as_a_jump():
    # sm_80 leaves a loop with "@P0 CALL.REL.NOINC <continuation>" (a CALL that never returns);
    # the inner loop 0x20-0x30 (2 instr) sits in the outer loop 0x10-0x60 (own: 0x10, 0x40-0x60).
    body = """
0000 MOV R1, c[0x0][0x28]
0010 IADD3 R2, R2, 0x1, RZ
0020 FADD R5, R5, R3
0030 @P1 BRA 0x20
0040 ISETP.GE.AND P0, PT, R2, 0x8, PT
0050 @P0 CALL.REL.NOINC 0x70
0060 BRA 0x10
0070 STG.E desc[UR4][R6.64], R5
0080 EXIT
"""
    (fn,) = sass.parse_sass(listing(body, arch="sm_80"))
    a = counting.analyse(fn)
    assert [(lp.first, lp.depth, lp.parent, lp.own_instrs) for lp in a.loops] == [
        (0x10, 0, None, 4),
        (0x20, 1, 0, 2),
    ]
    assert a.top_instrs == 3 and a.cold_instrs == 0
    assert a.instructions_per_thread([3, 4]) == 3 + 3 * 4 + 3 * 4 * 2


def test_plan_trips_from_markers_and_loop_count_check():
    # the outer loop's own code holds 3 peeled STS, the inner loop a 4-way unrolled body
    body = """
0000 STS [R1], R2
0010 STS [R1+0x4], R2
0020 STS [R1+0x8], R2
0030 STS [R1+0xc], R2
0040 STS [R1+0x10], R2
0050 STS [R1+0x14], R2
0060 STS [R1+0x18], R2
0070 @P0 BRA 0x30
0080 EXIT
"""
    (fn,) = sass.parse_sass(listing(body))
    a = counting.analyse(fn)
    spec = (plan_api.LoopSpec("tile load", "STS"),)
    assert plan_api.trips(a, spec, [22.5], "toy") == [pytest.approx((22.5 - 3) / 4)]
    assert plan_api.trips(a, spec, [2.0], "toy") == [0.0]
    with pytest.raises(sass.SassError, match="toy: the plan describes 2 loops"):
        plan_api.trips(a, spec * 2, [1.0, 1.0], "toy")
    with pytest.raises(sass.SassError, match="should hold STG"):
        plan_api.trips(a, (plan_api.LoopSpec("out", "STG"),), [1.0], "toy")


def test_warp_units_take_the_slowest_lane():
    tid = np.arange(256)
    per_thread = plan_api.strided_counts(612, tid, 256)  # 18 x 34 tile over 256 threads
    assert per_thread[:100].tolist() == [3] * 100 and set(per_thread[100:]) == {2}
    assert plan_api.warp_units(per_thread) == pytest.approx((4 * 3 + 4 * 2) / 8)


def test_occupancy():
    assert gpus.occupancy("sm_90", 64, 0, 256) == (0.5, "registers")  # 2048 regs/warp: 32 warps
    occ, limiter = gpus.occupancy("sm_80", 32, 100 * 1024, 256)  # 101 KB with the reserved 1 KB
    assert (occ, limiter) == (8 / 64, "shared memory")
    assert gpus.occupancy("sm_90", 16, 0, 1024)[0] == 1.0
    with pytest.raises(ValueError):
        gpus.occupancy("sm_90", 256, 0, 256)
    h100 = gpus.GPUS["H100"]
    assert h100.warp_instr_per_s == pytest.approx(132 * 4 * 1.755e9)


def test_sector_counts():
    t = traffic.TensorMeta((1, 1, 4, 80), (320, 320, 80, 1), 4)
    box = traffic.BoxCounter(t)
    # 33 floats of one row from column 0: bytes 0..131 -> 5 sectors; from column 1: 4..135 -> 5
    assert box.total(np.array([[0, 0, 0, 0]]), np.array([[1, 1, 1, 33]])) == 5
    assert box.total(np.array([[0, 0, 1, 1]]), np.array([[1, 1, 2, 33]])) == 4 + 1
    # two rows of 8 floats starting at column 4 (byte 16): 2 sectors each
    assert box.total(np.array([[0, 0, 0, 4]]), np.array([[1, 1, 2, 12]])) == 4
    whole = traffic.pixel_window_sectors(t, [(0, 0, 1)], np.arange(0, 320, 64), 64, 0)
    assert whole == t.nbytes // 32
    halo = traffic.pixel_window_sectors(t, [(0, 0, 1)], np.array([80]), 80, 1)
    assert halo == 3 * 10  # row 1 and its neighbours 0 and 2, whole rows of 10 sectors


def test_aten_counter_counts_kernels_not_views_or_allocations():
    x = torch.randn(4, 5)
    with aten_ops.AtenOpCounter() as c:
        torch.empty(3)
        x.t()
        x.to(torch.float32)  # no copy: returns x
        x.sum(0)
        x.to(torch.float64)
        torch.zeros(3, 2).zero_()
    assert [op.name for op in c.ops if not op.launches] == [
        "aten.empty.memory_format",
        "aten.t.default",
    ]
    assert [op.name for op in c.launching] == [
        "aten.sum.dim_IntList",
        "aten._to_copy.default",
        "aten.zeros.default",  # allocates and fills
        "aten.zero_.default",  # in place
    ]
    s = c.launching[0]
    assert (s.read_bytes, s.write_bytes) == (80, 20)


# ------------------------------------------------------------------------------ plans vs binaries


def _has_cuda_kernels() -> bool:
    from lgf_ops import _cpp

    return _cpp.has_cuda_kernel()


@pytest.fixture(scope="module")
def cuda_dump():
    """cuobjdump's reading of the built extension (once per module)."""
    if not _has_cuda_kernels():
        pytest.skip("the extension has no CUDA kernels (built without CUDA): no SASS to check")
    from static import cuda_report, cuobjdump

    path = cuda_report.extension_path()
    return path, cuobjdump.dump_binary(path)


def _load(monkeypatch, cuda_dump):
    from static import cuda_report

    path, dump = cuda_dump
    monkeypatch.setattr(cuda_report, "dump_binary", lambda p: dump)
    return cuda_report.load_kernels(path)


def test_every_cuda_kernel_instance_matches_its_plan(monkeypatch, cuda_dump):
    from static import cuda_plans

    kernels = _load(monkeypatch, cuda_dump)
    assert {a for _, _, a in kernels} == {"sm_80", "sm_90"}
    for (name, dtype, arch), ck in kernels.items():
        acc = 8 if dtype == torch.float64 else 4
        itemsize = torch.empty((), dtype=dtype).element_size()
        layout = "channels_last" if "nhwc" in name else "nchw"
        case = cuda_plans.Case((1, 40, 19, 37), layout, itemsize, acc)
        plan = cuda_plans.KERNELS[name]
        t = plan_api.trips(ck.analysed(), plan.loops, plan.work(case).units, f"{name} {arch}")
        assert all(v >= 0 for v in t)


def test_cuda_kernel_without_a_plan_fails_loudly(monkeypatch, cuda_dump):
    from static import cuda_plans

    monkeypatch.delitem(cuda_plans.KERNELS, "forward_nhwc_kernel")
    with pytest.raises(RuntimeError, match="forward_nhwc_kernel .*has no plan"):
        _load(monkeypatch, cuda_dump)


def test_cuda_plan_of_a_gone_kernel_fails_loudly(monkeypatch, cuda_dump):
    from static import cuda_plans

    monkeypatch.setitem(cuda_plans.KERNELS, "old_kernel", cuda_plans.KERNELS["forward_nchw_kernel"])
    with pytest.raises(RuntimeError, match="old_kernel"):
        _load(monkeypatch, cuda_dump)


def test_cuda_plan_checks_the_tile_geometry_it_mirrors(tmp_path):
    from static import cuda_plans

    cuda_plans.check_source_facts()  # the real header
    with open(cuda_plans.TILE_HEADER) as f:
        text = f.read().replace("kNchwRows = 4;", "kNchwRows = 2;")
    fake = tmp_path / "tile_plan.cuh"
    fake.write_text(text)
    with pytest.raises(RuntimeError, match="kNchwRows = 4"):
        cuda_plans.check_source_facts(str(fake))


triton_needed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("triton") is None, reason="triton is not installed"
)


@triton_needed
def test_triton_kernel_without_a_plan_fails_loudly():
    from static import cases, triton_capture, triton_report

    fake = types.SimpleNamespace(fn=types.SimpleNamespace(__name__="_new_kernel"))
    cap = triton_capture.Capture(launches=[triton_capture.Launch(fake, (1,), (), {})])
    case = next(cases.iter_cases(["A"], ["float32"], ["nchw"], ["backward"]))
    with pytest.raises(RuntimeError, match="_new_kernel .*has no plan"):
        triton_report._works(case, cap)


@triton_needed
def test_triton_plan_of_a_gone_kernel_fails_loudly(monkeypatch):
    from static import triton_plans, triton_report

    triton_report.check_plans()
    monkeypatch.setitem(
        triton_plans.KERNELS, "_gone_kernel", triton_plans.KERNELS["lgf_forward_kernel"]
    )
    with pytest.raises(RuntimeError, match="_gone_kernel"):
        triton_report.check_plans()


# ------------------------------------------------------------------------------ the tool


def _clean_env():
    env = dict(os.environ)
    env.pop("TRITON_INTERPRET", None)  # compiling needs triton imported without its interpreter
    return env


SPECIALISATION = """
import sys, torch
sys.path[:0] = [".", "benchmarks"]
from static import triton_capture as tc
from static.triton_report import meta_inputs
import lgf_ops.triton_launch as K
for layout in ("nchw", "channels_last"):
    cap = tc.capture(K.lgf_forward, *meta_inputs((2, 64, 9, 7), torch.float32, layout))
    for launch in cap.launches:
        b = tc.bind(launch, 90)
        named = launch.named_args()
        ints = [p for p in launch.kernel.params if type(named[p.name]) is int]
        ones = [p.name for p in ints if not p.is_constexpr and named[p.name] == 1]
        assert ones and all(b.signature[n] == "constexpr" for n in ones), (layout, ones)
        ptrs = [p for p in launch.kernel.params if isinstance(named[p.name], torch.Tensor)]
        assert all(["tt.divisibility", 16] in b.attrs[(p.num,)] for p in ptrs), b.attrs
        assert b.options.num_warps == launch.kwargs["num_warps"]
        print(layout, launch.name, "unit strides:", ones)

# a launcher in the torch.library.triton_op style (wrap_triton) is captured the same way
import triton
import triton.language as tl


@triton.jit
def _copy(src, dst, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(dst + offs, tl.load(src + offs, mask=offs < n), mask=offs < n)


def wrapped(x):
    y = torch.empty_like(x)
    torch.library.wrap_triton(_copy)[(4,)](x, y, x.numel(), BLOCK=64)
    return y


cap = tc.capture(wrapped, torch.empty(256, device="meta"))
assert [(la.name, la.programs()) for la in cap.launches] == [("_copy", 4)], cap.launches
print("wrap_triton captured")
"""


@triton_needed
def test_triton_launch_is_bound_like_jitfunction_run(tmp_path):
    """Integers equal to 1 (the unit stride) become constexprs, tensors get 16-byte
    divisibility, num_warps is the launcher's: what JITFunction.run would compile."""
    script = tmp_path / "specialisation.py"  # triton.jit needs its source in a file
    script.write_text(SPECIALISATION)
    cmd = [sys.executable, str(script)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert proc.stdout.startswith("nchw ") and "\nchannels_last " in proc.stdout, proc.stdout
    assert "wrap_triton captured" in proc.stdout


def test_gpu_static_runs_and_its_records_are_sane(tmp_path):
    out = tmp_path / "static.json"
    cmd = [sys.executable, "benchmarks/gpu_static.py", "--shape", "A", "--dtype", "float32"]
    cmd += ["--layout", "nchw", "--gpu", "H100", "--json", str(out)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "STATIC ESTIMATES" in proc.stdout
    records = json.loads(out.read_text())
    expect = {
        "cuda": _has_cuda_kernels(),
        "triton": __import__("importlib").util.find_spec("triton") is not None,
    }
    for backend, present in expect.items():
        rows = [r for r in records if r["backend"] == backend]
        if present:
            assert sorted(r["direction"] for r in rows) == ["backward", "forward"], proc.stdout
        else:
            assert not rows and f"SKIPPED: {backend} rows missing" in proc.stdout
    assert records
    for r in records:
        assert REQUIRED_KEYS <= set(r)
        assert (r["dtype"], r["layout"], r["shape"], r["gpu"]) == ("float32", "nchw", "A", "H100")
        assert r["regs"] > 0 and r["spill_bytes"] >= 0 and 0 < r["occupancy"] <= 1
        assert r["instr_per_output"] > 0 and r["launches"] >= 1
        assert r["est_us"] == max(r["memory_us"], r["issue_us"])
        assert r["memory_us"] >= r["roofline_us"] > 0  # every sector touched >= x and y once
        if r["direction"] == "backward":
            assert r["workspace_bytes"] > 0 and r["launches"] >= 2


def test_a_binary_without_device_code_is_a_reported_skip():
    """An extension built without CUDA gives a Skip with the reason, which the tool prints."""
    from static import cuda_report, cuobjdump

    try:
        cuobjdump.find_cuobjdump()
    except cuobjdump.ToolMissing as e:
        pytest.skip(str(e))
    cpu_only = os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so")
    with pytest.raises(cuda_report.Skip, match="no CUDA device code"):
        cuda_report.load_kernels(cpu_only)
