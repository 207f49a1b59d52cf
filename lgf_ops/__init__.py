"""The fused Local-Global Fusion op and its backends (docs/design.md §2, §3).

    y = lgf_ops.lgf_fused(x, weight, bias, g, gate, gamma, backend="auto")

Backends: "cpp" (C++ CPU kernel), "cuda" (CUDA kernel), "triton" (Triton kernels, GPU or
TRITON_INTERPRET=1), "reference" (plain PyTorch). "auto" picks, for CUDA tensors, cuda (when its
compiled code runs on the tensor's GPU) > triton > reference and, for CPU tensors,
cpp > reference, with one warning that says why when a compiled kernel cannot be used. The env
var LGF_BACKEND sets the default. `python -m lgf_ops` prints build_info() and tests every
backend on this machine.
"""

import importlib.util
import os
import warnings

import torch
from torch import Tensor

from . import _cpp
from ._validate import check_inputs
from ._version import __version__
from .build_info import build_info, recorded_build
from .cuda_targets import coverage_gap
from .export import export_decompositions, lgf_fused_script
from .reference import lgf_fused_reference

__all__ = [
    "BACKENDS",
    "__version__",
    "available_backends",
    "build_info",
    "cuda_kernel_gap",
    "export_decompositions",
    "lgf_fused",
    "lgf_fused_reference",
    "lgf_fused_script",
    "resolve_backend",
]

BACKENDS = ("auto", "cpp", "cuda", "triton", "reference")


# Looked up once at import, so that lgf_fused stays traceable by torch.compile (fullgraph).
_HAS_CPP = _cpp.has_cpu_kernel()
_HAS_CUDA = _cpp.has_cuda_kernel()
_CUDA_TARGETS = (recorded_build() or {}).get("cuda_targets") if _HAS_CUDA else None
_TRITON_STATE: dict[str, str] = {}  # {"error": why the Triton op cannot load, or ""}
_WARNED: set[str] = set()


@torch.compiler.assume_constant_result
def triton_load_error() -> str:
    """Why the Triton backend cannot be used ("" when it can). The import is tried once: it is
    slow, and a broken install fails the same way every time."""
    if "error" not in _TRITON_STATE:
        if importlib.util.find_spec("triton") is None:
            _TRITON_STATE["error"] = "the 'triton' package is not installed"
        else:
            try:
                from . import triton_op  # noqa: F401
            except Exception as e:  # ImportError, or a Triton install that cannot initialise
                _TRITON_STATE["error"] = f"importing it failed: {type(e).__name__}: {e}"
            else:
                _TRITON_STATE["error"] = ""
    return _TRITON_STATE["error"]


def available_backends() -> list[str]:
    """Names of the backends this install can run (the device still has to match)."""
    names = []
    if _HAS_CPP:
        names.append("cpp")
    if _HAS_CUDA:
        names.append("cuda")
    if not triton_load_error():
        names.append("triton")
    names.append("reference")
    return names


def _default_backend() -> str:
    name = os.environ.get("LGF_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"LGF_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _no_extension() -> str:
    return f"the extension lgf_ops._C did not load ({_cpp.load_error()})"


def _capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def cuda_kernel_gap(device: torch.device) -> str:
    """Why the compiled CUDA kernels cannot run on this CUDA device ("" when they can)."""
    if not _cpp.loaded():
        return _no_extension()
    if not _HAS_CUDA:
        return "the extension was built without CUDA kernels"
    return coverage_gap(_CUDA_TARGETS, _capability(device))


_constant_cuda_gap = torch.compiler.assume_constant_result(cuda_kernel_gap)


@torch.compiler.assume_constant_result
def _auto_cuda(device: torch.device) -> str:
    gap = cuda_kernel_gap(device)
    if not gap:
        return "cuda"
    error = triton_load_error()
    if not error:
        if _HAS_CUDA or not _cpp.loaded():  # a CPU-only build is a choice, not worth a warning
            _warn_once(f"lgf_fused: backend='auto' runs CUDA tensors through Triton: {gap}")
        return "triton"
    _warn_once(
        "lgf_fused: backend='auto' runs CUDA tensors through the plain-PyTorch reference "
        f"(slow): {gap}, and Triton is unusable ({error})"
    )
    return "reference"


@torch.compiler.assume_constant_result
def _auto_cpu() -> str:
    if _HAS_CPP:
        return "cpp"
    _warn_once(
        "lgf_fused: backend='auto' runs CPU tensors through the plain-PyTorch reference "
        f"(slow): {_no_extension()}"
    )
    return "reference"


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Map a requested backend name and a device to the backend that will run."""
    if backend is None or backend == "auto":
        backend = _default_backend()  # LGF_BACKEND, or "auto" when it is unset
    if backend not in BACKENDS:
        raise ValueError(f"lgf_fused: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            return _auto_cuda(device)
        return _auto_cpu() if device.type == "cpu" else "reference"
    if backend == "cpp":
        if not _HAS_CPP:
            raise RuntimeError(
                "lgf_fused: backend='cpp' requested but the C++ extension is not built "
                f"({_cpp.load_error()})"
            )
        if device.type != "cpu":
            raise ValueError(f"lgf_fused: backend='cpp' runs on CPU tensors, got x on {device}")
    elif backend == "cuda":
        if not _HAS_CUDA:
            raise RuntimeError(
                "lgf_fused: backend='cuda' requested but the extension was built without CUDA"
            )
        if device.type != "cuda":
            raise ValueError(f"lgf_fused: backend='cuda' runs on CUDA tensors, got x on {device}")
        gap = _constant_cuda_gap(device)
        if gap:
            raise RuntimeError(f"lgf_fused: backend='cuda' requested but {gap}")
    elif backend == "triton" and triton_load_error():
        raise RuntimeError(
            f"lgf_fused: backend='triton' requested but Triton is unusable: {triton_load_error()}"
        )
    return backend


def lgf_fused(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    *,
    backend: str | None = None,
) -> Tensor:
    """Fused LGF: y = x + gamma * (sigmoid(z_l) * l + sigmoid(z_g) * g), differentiable.

    Args:
        x: (N, C, H, W) input, NCHW-contiguous, channels_last or any strides.
        weight: (C, 1, 3, 3) depthwise filter. bias: (C,). g: (N, C) global context.
        gate: (6, C) rows a_l, b_l, c_l, a_g, b_g, c_g. gamma: (C,) residual scale.
        backend: "auto" (the default: $LGF_BACKEND if set, else the best available for x's
            device), "cpp", "cuda", "triton" or "reference".
    """
    check_inputs(x, weight, bias, g, gate, gamma)
    if torch.onnx.is_in_onnx_export():  # ONNX has no lgf op: export the math in standard ops
        return lgf_fused_reference(x, weight, bias, g, gate, gamma)
    name = resolve_backend(backend, x.device)
    if name in ("cpp", "cuda"):
        return torch.ops.lgf.fused_forward(x, weight, bias, g, gate, gamma)
    if name == "triton":
        from .triton_op import lgf_fused_triton

        return lgf_fused_triton(x, weight, bias, g, gate, gamma)
    return lgf_fused_reference(x, weight, bias, g, gate, gamma)


from . import flops  # noqa: F401,E402  (registers the FLOP formula)
