"""What this install of lgf_ops was built with and what it can run (`python -m lgf_ops`)."""

import json
import os
import platform
from typing import Any

import torch

from ._version import __version__

BUILD_INFO_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_build_info.json")


def recorded_build() -> dict[str, Any] | None:
    """The facts setup.py wrote next to lgf_ops._C when it built it, or None when there are none
    (no extension, or one built before they were recorded)."""
    try:
        with open(BUILD_INFO_FILE) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RuntimeError(f"lgf_ops: cannot read {BUILD_INFO_FILE}: {e}") from e


def _cuda_devices() -> list[dict[str, Any]]:
    from . import cuda_kernel_gap

    devices = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        major, minor = torch.cuda.get_device_capability(index)
        gap = cuda_kernel_gap(torch.device("cuda", index))
        devices.append(
            {
                "name": torch.cuda.get_device_name(index),
                "capability": f"{major}.{minor}",
                "cuda_kernels_run": not gap,
                "why_not": gap or None,
            }
        )
    return devices


def build_info() -> dict[str, Any]:
    """Versions the extension was built against, the CUDA code and CPU SIMD levels it holds, the
    SIMD level in use, the backends this install offers and the GPUs it sees."""
    from . import _cpp, available_backends

    built = recorded_build() or {}
    return {
        "version": __version__,
        "extension": _cpp.extension_path(),
        "extension_error": None if _cpp.loaded() else _cpp.load_error(),
        "built_with_torch": built.get("torch"),
        "built_with_torch_cuda": built.get("torch_cuda"),
        "built_with_nvcc": built.get("nvcc"),
        "cuda_targets": built.get("cuda_targets"),
        "cpu_simd_compiled": built.get("cpu_simd_compiled"),
        "cpu_simd_in_use": torch.ops.lgf.cpu_simd() if _cpp.loaded() else None,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "backends": available_backends(),
        "cuda_devices": _cuda_devices(),
    }
