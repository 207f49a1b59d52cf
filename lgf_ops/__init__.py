"""The fused Local-Global Fusion op and its backends (DESIGN.md section 2).

    y = lgf_ops.lgf_fused(x, weight, bias, g, gate, gamma, backend="auto")

Backends: "cpp" (C++ CPU kernel), "cuda" (CUDA kernel), "triton" (Triton kernel, GPU or
TRITON_INTERPRET=1), "reference" (plain PyTorch). "auto" picks, for CUDA tensors, cuda > triton >
reference and, for CPU tensors, cpp > reference. The env var LGF_BACKEND sets the default.
"""

import importlib.util
import os

import torch

from . import _cpp
from ._validate import check_inputs
from .reference import lgf_fused_reference

__all__ = ["lgf_fused", "lgf_fused_reference", "available_backends", "BACKENDS"]

BACKENDS = ("auto", "cpp", "cuda", "triton", "reference")


# Looked up once at import, so that lgf_fused stays traceable by torch.compile (fullgraph).
_HAS_CPP = _cpp.has_cpu_kernel()
_HAS_CUDA = _cpp.has_cuda_kernel()
_HAS_TRITON_PACKAGE = importlib.util.find_spec("triton") is not None


def _triton_available():
    if not _HAS_TRITON_PACKAGE:
        return False
    try:
        from . import triton_op  # noqa: F401
    except Exception:  # ImportError, or a Triton install that cannot initialise
        return False
    return True


def available_backends():
    """Names of the backends this install can run (the device still has to match)."""
    names = []
    if _HAS_CPP:
        names.append("cpp")
    if _HAS_CUDA:
        names.append("cuda")
    if _triton_available():
        names.append("triton")
    names.append("reference")
    return names


def _default_backend():
    name = os.environ.get("LGF_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"LGF_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name


def resolve_backend(backend, device):
    """Map a requested backend name and a device to the backend that will run."""
    if backend is None or backend == "auto":
        backend = _default_backend()  # LGF_BACKEND, or "auto" when it is unset
    if backend not in BACKENDS:
        raise ValueError(f"lgf_fused: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            if _HAS_CUDA:
                return "cuda"
            return "triton" if _triton_available() else "reference"
        if device.type == "cpu" and _HAS_CPP:
            return "cpp"
        return "reference"
    if backend == "cpp":
        if not _HAS_CPP:
            raise RuntimeError(
                f"lgf_fused: backend='cpp' requested but the C++ extension is not built ({_cpp.load_error()})"
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
    elif backend == "triton" and not _triton_available():
        raise RuntimeError("lgf_fused: backend='triton' requested but Triton is not importable")
    return backend


def lgf_fused(x, weight, bias, g, gate, gamma, *, backend=None):
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
