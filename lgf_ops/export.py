"""What export needs from the op (docs/design.md §2; docs/export.md).

- A decomposition of lgf::fused_forward (and, once Triton loads, lgf_triton::fused_forward) into
  its reference math, in torch._decomp's table: the ONNX exporter decomposes the op with it, and
  `ep.run_decompositions(export_decompositions())` gives a graph of standard ATen ops.
  (A plain `run_decompositions()` keeps the op: torch's default table is a fixed list of ATen
  ops plus CompositeImplicitAutograd ops, and a CompositeImplicitAutograd kernel would never run
  here, since the op has its own CPU, CUDA and autograd kernels.)
- `lgf_fused_script`, the op as TorchScript compiles it (`lgf.LGF.forward` calls it when
  scripted): the C++ kernel when it exists for x's device, else the reference math.
"""

import torch
from torch import Tensor
from torch._decomp import register_decomposition

from . import _cpp
from .reference import lgf_fused_reference

__all__ = ["export_decompositions", "lgf_fused_script", "register_reference_decomposition"]

_DECOMPOSED: list[torch._ops.OpOverload] = []


def register_reference_decomposition(op: torch._ops.OpOverload) -> None:
    """Registers the reference math as the decomposition of a forward op of this package."""
    if op not in _DECOMPOSED:
        register_decomposition(op)(lgf_fused_reference)
        _DECOMPOSED.append(op)


def export_decompositions() -> dict:
    """torch.export's default decomposition table plus the reference math for the lgf ops."""
    table = torch.export.default_decompositions()
    for op in _DECOMPOSED:
        table[op] = lgf_fused_reference
    return table


# TorchScript cannot read a Python bool, so what this build has picks the function at import.


def _script_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    backend: str = "auto",
) -> Tensor:
    return lgf_fused_reference(x, weight, bias, g, gate, gamma)


def _script_cpu_kernel(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    backend: str = "auto",
) -> Tensor:
    if backend != "reference" and x.device.type == "cpu":
        return torch.ops.lgf.fused_forward(x, weight, bias, g, gate, gamma)
    return lgf_fused_reference(x, weight, bias, g, gate, gamma)


def _script_cpu_cuda_kernels(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    backend: str = "auto",
) -> Tensor:
    if backend != "reference" and (x.device.type == "cpu" or x.device.type == "cuda"):
        return torch.ops.lgf.fused_forward(x, weight, bias, g, gate, gamma)
    return lgf_fused_reference(x, weight, bias, g, gate, gamma)


if _cpp.has_cuda_kernel():
    lgf_fused_script = _script_cpu_cuda_kernels
elif _cpp.has_cpu_kernel():
    lgf_fused_script = _script_cpu_kernel
else:
    lgf_fused_script = _script_reference
