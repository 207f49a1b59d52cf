"""The fused Local-Global Fusion op and its backends (docs/design.md §2, §3).

    y = lgf_ops.lgf_fused(x, weight, bias, g, gate, gamma, backend="auto")

Backends: "cpp" (C++ CPU kernel), "cuda" (CUDA kernel), "triton" (Triton kernels, GPU or
TRITON_INTERPRET=1), "reference" (plain PyTorch). "auto" picks, for CUDA tensors, cuda > triton >
reference (with one warning when it has to fall back to the reference) and, for CPU tensors,
cpp > reference. The env var LGF_BACKEND sets the default.
"""

import importlib.util
import os
import warnings

import torch
from torch import Tensor

from . import _cpp
from ._validate import check_inputs
from .reference import lgf_fused_reference

__all__ = ["lgf_fused", "lgf_fused_reference", "available_backends", "BACKENDS"]

BACKENDS = ("auto", "cpp", "cuda", "triton", "reference")


# Looked up once at import, so that lgf_fused stays traceable by torch.compile (fullgraph).
_HAS_CPP = _cpp.has_cpu_kernel()
_HAS_CUDA = _cpp.has_cuda_kernel()
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


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


@torch.compiler.assume_constant_result
def _auto_cuda() -> str:
    if _HAS_CUDA:
        return "cuda"
    error = triton_load_error()
    if not error:
        return "triton"
    _warn_once(
        "auto-cuda",
        "lgf_fused: backend='auto' runs CUDA tensors through the plain-PyTorch reference "
        f"(slow): the extension was built without CUDA kernels and Triton is unusable ({error})",
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
            return _auto_cuda()
        return "cpp" if device.type == "cpu" and _HAS_CPP else "reference"
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
    name = resolve_backend(backend, x.device)
    if name in ("cpp", "cuda"):
        return torch.ops.lgf.fused_forward(x, weight, bias, g, gate, gamma)
    if name == "triton":
        from .triton_op import lgf_fused_triton

        return lgf_fused_triton(x, weight, bias, g, gate, gamma)
    return lgf_fused_reference(x, weight, bias, g, gate, gamma)


from . import flops  # noqa: F401,E402  (registers the FLOP formula)
