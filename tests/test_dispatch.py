"""Arch-aware dispatch: backend='auto' runs the CUDA kernels only on GPUs their compiled code
covers, else Triton, else the reference, with one warning that says why; the same warning, with
the import error, when lgf_ops._C did not load. Also build_info() and `python -m lgf_ops`."""

import os
import subprocess
import sys

import pytest
import torch

import lgf_ops
from lgf_ops import _cpp
from lgf_ops.cuda_targets import coverage_gap, parse_target, target_runs_on
from lgf_ops.self_test import runnable_simd_levels

DEFAULT_BUILD = ["compute_90", "sm_80", "sm_90"]  # TORCH_CUDA_ARCH_LIST="8.0;9.0+PTX"
CUDA = torch.device("cuda")


@pytest.mark.parametrize(
    "target, capability, runs",
    [
        ("sm_80", (8, 0), True),
        ("sm_80", (8, 6), True),  # cubins run on later minors of their major
        ("sm_80", (8, 9), True),
        ("sm_80", (9, 0), False),  # ... not on the next major
        ("sm_80", (7, 5), False),
        ("compute_90", (9, 0), True),  # PTX is compiled by the driver for later GPUs
        ("compute_90", (10, 0), True),
        ("compute_90", (12, 0), True),
        ("compute_90", (8, 9), False),
        ("sm_90a", (9, 0), True),  # arch-specific code runs on that GPU only
        ("sm_100a", (10, 3), False),
        ("sm_100f", (10, 3), True),  # family code: later minors of the major
        ("sm_100f", (11, 0), False),
        ("sm_120", (12, 1), True),
    ],
)
def test_target_runs_on(target, capability, runs):
    assert target_runs_on(target, capability) is runs


@pytest.mark.parametrize("name", ["sm80", "compute_", "arch", "sm_8x"])
def test_bad_target_name_is_refused(name):
    with pytest.raises(ValueError, match="not a CUDA target name"):
        parse_target(name)


@pytest.mark.parametrize(
    "gpu, capability, covered",
    [("V100", (7, 0), False), ("T4", (7, 5), False), ("A100", (8, 0), True)]
    + [("A10", (8, 6), True), ("L4", (8, 9), True), ("H100", (9, 0), True)]
    + [("B200", (10, 0), True), ("RTX 5090", (12, 0), True)],
)
def test_default_build_covers(gpu, capability, covered):
    gap = coverage_gap(DEFAULT_BUILD, capability)
    assert (gap == "") is covered, gpu
    if not covered:
        cc = f"{capability[0]}.{capability[1]}"
        assert (
            f"compute capability {cc}" in gap and "sm_80" in gap and "TORCH_CUDA_ARCH_LIST" in gap
        )


def test_unknown_targets_count_as_covering():
    assert coverage_gap(None, (7, 5)) == ""


@pytest.fixture
def fresh_dispatch(monkeypatch):
    """A CUDA build for the default targets, a usable Triton, no warning given yet."""
    monkeypatch.setattr(lgf_ops, "_HAS_CUDA", True)
    monkeypatch.setattr(lgf_ops, "_CUDA_TARGETS", DEFAULT_BUILD)
    monkeypatch.setattr(lgf_ops, "_TRITON_STATE", {"error": ""})
    monkeypatch.setattr(lgf_ops, "_WARNED", set())
    monkeypatch.delenv("LGF_BACKEND", raising=False)
    return monkeypatch


def on_gpu(monkeypatch, capability):
    monkeypatch.setattr(lgf_ops, "_capability", lambda device: capability)


def test_auto_runs_cuda_on_a_covered_gpu(fresh_dispatch, recwarn):
    on_gpu(fresh_dispatch, (8, 6))
    assert lgf_ops.resolve_backend("auto", CUDA) == "cuda"
    assert lgf_ops.resolve_backend("cuda", CUDA) == "cuda"
    assert not [w for w in recwarn if "lgf_fused" in str(w.message)]


def test_auto_falls_back_to_triton_on_an_uncovered_gpu_with_one_warning(fresh_dispatch):
    on_gpu(fresh_dispatch, (7, 5))
    with pytest.warns(RuntimeWarning, match=r"through Triton: .*compute capability 7\.5") as rec:
        assert lgf_ops.resolve_backend("auto", CUDA) == "triton"
        assert lgf_ops.resolve_backend(None, CUDA) == "triton"
    assert len(rec) == 1
    with pytest.raises(RuntimeError, match=r"backend='cuda' requested but .*capability 7\.5"):
        lgf_ops.resolve_backend("cuda", CUDA)


def test_auto_falls_back_to_the_reference_when_triton_is_unusable(fresh_dispatch):
    on_gpu(fresh_dispatch, (7, 0))
    fresh_dispatch.setattr(lgf_ops, "_TRITON_STATE", {"error": "no triton for the test"})
    with pytest.warns(RuntimeWarning, match=r"reference .*capability 7\.0.*no triton for the test"):
        assert lgf_ops.resolve_backend("auto", CUDA) == "reference"


def test_cpu_only_build_with_triton_does_not_warn(fresh_dispatch, recwarn):
    fresh_dispatch.setattr(lgf_ops, "_HAS_CUDA", False)
    assert lgf_ops.resolve_backend("auto", CUDA) == "triton"
    assert not [w for w in recwarn if "lgf_fused" in str(w.message)]


def test_extension_that_failed_to_load_warns_once_with_its_error(fresh_dispatch):
    error = "ImportError: _C.so: undefined symbol: _ZN3c104test"
    fresh_dispatch.setattr(_cpp, "_C", None)
    fresh_dispatch.setattr(_cpp, "_LOAD_ERROR", error)
    fresh_dispatch.setattr(lgf_ops, "_HAS_CPP", False)
    fresh_dispatch.setattr(lgf_ops, "_HAS_CUDA", False)
    cpu = torch.device("cpu")
    with pytest.warns(
        RuntimeWarning, match="CPU tensors through the plain-PyTorch reference"
    ) as rec:
        assert lgf_ops.resolve_backend("auto", cpu) == "reference"
        assert lgf_ops.resolve_backend("auto", cpu) == "reference"
    assert len(rec) == 1 and "undefined symbol: _ZN3c104test" in str(rec[0].message)
    with pytest.warns(RuntimeWarning, match="through Triton: .*undefined symbol"):
        assert lgf_ops.resolve_backend("auto", CUDA) == "triton"
    with pytest.raises(RuntimeError, match="undefined symbol"):
        lgf_ops.resolve_backend("cpp", cpu)
    assert lgf_ops.build_info()["extension_error"] == error


def test_build_info_describes_this_build(monkeypatch):
    info = lgf_ops.build_info()
    assert info["version"] == lgf_ops.__version__
    assert info["extension"] and info["extension"].startswith(os.path.dirname(lgf_ops.__file__))
    assert info["built_with_torch"] == torch.__version__
    assert info["cpu_simd_in_use"] in info["cpu_simd_compiled"]
    assert "portable" in info["cpu_simd_compiled"]
    assert ("cuda" in info["backends"]) == bool(info["cuda_targets"])
    monkeypatch.setenv("LGF_CPU_SIMD", "portable")
    assert lgf_ops.build_info()["cpu_simd_in_use"] == "portable"


def test_python_m_lgf_ops_self_test_passes():
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "LGF_BACKEND")}
    proc = subprocess.run(
        [sys.executable, "-m", "lgf_ops"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert '"cpu_simd_in_use"' in proc.stdout
    assert "checks passed" in proc.stdout
    for level in runnable_simd_levels():  # each SIMD level this CPU has is checked
        assert f"ok   cpp:{level} " in proc.stdout, proc.stdout
    assert runnable_simd_levels()[0] == "portable"


def test_auto_resolves_under_torch_compile_fullgraph(fresh_dispatch):
    """The per-device choice is a constant for torch.compile (no graph break, no retrace)."""
    on_gpu(fresh_dispatch, (7, 5))

    def backend_name_length(x: torch.Tensor) -> torch.Tensor:
        return x + len(lgf_ops.resolve_backend("auto", torch.device("cuda", 0)))

    with pytest.warns(RuntimeWarning, match="through Triton"):
        out = torch.compile(backend_name_length, fullgraph=True, backend="eager")(torch.zeros(2))
    assert out.tolist() == [6.0, 6.0]  # len("triton")


def test_self_test_fails_on_wrong_numbers(monkeypatch, capsys):
    from lgf_ops import self_test
    from lgf_ops.__main__ import main

    monkeypatch.setattr(self_test, "_triton_interprets", lambda: False)  # cpp alone is enough
    real = lgf_ops.lgf_fused
    monkeypatch.setattr(lgf_ops, "lgf_fused", lambda *a, **k: real(*a, **k) * 1.001)
    assert main(["--device", "cpu"]) == 1
    assert "FAIL cpp" in capsys.readouterr().out
