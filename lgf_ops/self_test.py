"""Every backend this install can run on a device, forward and backward, against the fp64
plain-PyTorch reference: the first check on a new machine (`python -m lgf_ops`)."""

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .reference import lgf_fused_reference

# max |backend - reference| <= TOLERANCE * max(1, max |reference|), per output and gradient
TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 8e-2}
LAYOUTS = ("nchw", "channels_last")
OUTPUTS = ("y", "dx", "dweight", "dbias", "dg", "dgate", "dgamma")
SIMD_LEVELS = ("portable", "avx2", "avx512")  # the C++ CPU kernels' float levels, low to high


@dataclass
class CheckResult:
    backend: str
    dtype: torch.dtype
    layout: str
    worst: str  # the output or gradient with the largest scaled error
    error: float  # its error / max(1, max |reference|)
    passed: bool
    failure: str = ""  # the exception, when the backend raised one

    def line(self) -> str:
        name = f"{self.backend:<12} {str(self.dtype).removeprefix('torch.'):<8} {self.layout:<13}"
        if self.failure:
            return f"FAIL {name} raised {self.failure}"
        verdict = "ok  " if self.passed else "FAIL"
        return f"{verdict} {name} worst {self.worst:<7} scaled error {self.error:.1e}"


def runnable_backends(device: torch.device) -> list[str]:
    """The fused backends (not "reference") that run tensors on `device` here."""
    from . import available_backends, cuda_kernel_gap

    names = []
    for name in available_backends():
        if name == "cpp" and device.type == "cpu":
            names.append(name)
        elif name == "cuda" and device.type == "cuda" and not cuda_kernel_gap(device):
            names.append(name)
        elif name == "triton" and (device.type == "cuda" or _triton_interprets()):
            names.append(name)
    return names


def _triton_interprets() -> bool:
    from .triton_launch import interpreting

    return interpreting()


def make_case(device: torch.device, layout: str, seed: int = 0) -> tuple[list[Tensor], Tensor]:
    """fp64 inputs (2, 24, 13, 17) in `layout` and an upstream gradient, on `device`."""
    gen = torch.Generator().manual_seed(seed)
    N, C, H, W = 2, 24, 13, 17

    def rnd(*shape: int, scale: float = 1.0) -> Tensor:
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(device)

    x = rnd(N, C, H, W)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    params = [rnd(C, 1, 3, 3, scale=0.4), rnd(C, scale=0.2), rnd(N, C), rnd(6, C), rnd(C)]
    return [x, *params], rnd(N, C, H, W)


def _outputs(fn, inputs: list[Tensor], dy: Tensor) -> list[Tensor]:
    leaves = [t.detach().requires_grad_() for t in inputs]
    y = fn(*leaves)
    return [y, *torch.autograd.grad(y, leaves, dy)]


def _scaled_error(actual: Tensor, expected: Tensor) -> float:
    """max |a - e| / max(1, max |e|); inf when a holds NaN or inf."""
    diff = (actual.double() - expected).abs().max()
    error = (diff / expected.abs().max().clamp(min=1.0)).item()
    return error if math.isfinite(error) else math.inf


def check_backend(
    backend: str, dtype: torch.dtype, layout: str, device: torch.device
) -> CheckResult:
    from . import lgf_fused

    inputs, dy = make_case(device, layout)
    expected = _outputs(lgf_fused_reference, inputs, dy)
    try:
        actual = _outputs(
            lambda *a: lgf_fused(*a, backend=backend),
            [inputs[0].to(dtype), *(t.float() for t in inputs[1:3]), inputs[3].to(dtype)]
            + [t.float() for t in inputs[4:]],
            dy.to(dtype),
        )
    except Exception as e:  # reported, not raised: the other backends still get checked
        return CheckResult(backend, dtype, layout, "", 0.0, False, f"{type(e).__name__}: {e}")
    errors = {name: _scaled_error(a, e) for name, a, e in zip(OUTPUTS, actual, expected)}
    worst = max(errors, key=errors.__getitem__)
    error = errors[worst]
    return CheckResult(backend, dtype, layout, worst, error, error <= TOLERANCE[dtype])


@contextmanager
def simd_cap(level: str) -> Iterator[None]:
    """Caps the C++ CPU kernels at `level` (LGF_CPU_SIMD, read on every call) meanwhile."""
    old = os.environ.get("LGF_CPU_SIMD")
    os.environ["LGF_CPU_SIMD"] = level
    try:
        yield
    finally:
        if old is None:
            del os.environ["LGF_CPU_SIMD"]
        else:
            os.environ["LGF_CPU_SIMD"] = old


def runnable_simd_levels() -> list[str]:
    """The SIMD levels of the C++ CPU kernels that this CPU runs."""
    levels = []
    for level in SIMD_LEVELS:
        with simd_cap(level):
            if torch.ops.lgf.cpu_simd() == level:
                levels.append(level)
    return levels


def _check_at_level(level: str, dtype: torch.dtype, layout: str) -> CheckResult:
    with simd_cap(level):
        result = check_backend("cpp", dtype, layout, torch.device("cpu"))
    result.backend = f"cpp:{level}"
    return result


def run_self_test(device: torch.device) -> list[CheckResult]:
    """Each runnable backend (the C++ CPU kernels at each SIMD level this CPU has) x (float32, and
    float16/bfloat16 on CUDA) x NCHW/channels_last."""
    dtypes = [torch.float32]
    if device.type == "cuda":
        dtypes += [torch.float16, torch.bfloat16]
    results = []
    for backend in runnable_backends(device):
        for dtype in dtypes:
            for layout in LAYOUTS:
                if backend == "cpp":
                    results += [_check_at_level(lv, dtype, layout) for lv in runnable_simd_levels()]
                else:
                    results.append(check_backend(backend, dtype, layout, device))
    return results
