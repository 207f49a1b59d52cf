"""The ATen ops the C++ wrappers run beside their kernels, counted by running them.

The CPU and CUDA wrappers of lgf::fused_forward / lgf::fused_backward share two host-side
steps: ``ParamTensors`` (the parameters converted to the compute dtype) and, in the backward,
``finalize_param_grads`` (csrc/lgf_ops.cpp). The CPU wrappers for NCHW x run nothing else on
the host but allocations, so running them under ``AtenOpCounter`` (which follows into the C++
op) gives those two groups exactly: "param_tensors" = the forward's ATen launches,
"finalize_param_grads" = the backward's after the same ParamTensors prefix. Their bytes depend
on N and C only (the partials are (N, C, 16)), so H = W = 2 gives the real figures.
"""

from __future__ import annotations

import functools

import torch

from .aten_ops import AtenOp, AtenOpCounter
from .plan_api import HostOp


def _inputs(N: int, C: int, dtype: torch.dtype) -> list[torch.Tensor]:
    pdt = torch.float64 if dtype == torch.float64 else torch.float32  # AMP: fp32 parameters
    x = torch.randn(N, C, 2, 2).to(dtype)
    return [
        x,
        torch.randn(C, 1, 3, 3, dtype=pdt),
        torch.randn(C, dtype=pdt),
        torch.randn(N, C).to(dtype),
        torch.randn(6, C, dtype=pdt),
        torch.randn(C, dtype=pdt),
    ]


def _launching(fn) -> list[AtenOp]:
    counter = AtenOpCounter(enter_custom=True)
    with counter:
        fn()
    if not counter.custom:
        raise RuntimeError("host_ops: the lgf op did not reach the counter")
    return counter.launching


@functools.lru_cache(maxsize=None)
def cpu_wrapper_groups(N: int, C: int, dtype: torch.dtype) -> dict[str, tuple[HostOp, ...]]:
    """{"param_tensors": ..., "finalize_param_grads": ...} for x of dtype with N images and C
    channels (parameters in fp32, fp64 for fp64 x)."""
    import lgf_ops  # noqa: F401  (loads the extension and registers torch.ops.lgf)

    inp = _inputs(N, C, dtype)
    fwd = _launching(lambda: torch.ops.lgf.fused_forward(*inp))
    dy = torch.randn_like(inp[0])
    bwd = _launching(lambda: torch.ops.lgf.fused_backward(dy, *inp))
    prefix = [op.name for op in bwd[: len(fwd)]]
    if prefix != [op.name for op in fwd]:
        raise RuntimeError(
            "host_ops: the CPU backward wrapper no longer starts with the forward's ParamTensors "
            f"ops ({[op.name for op in fwd]} vs {prefix}); update host_ops.py"
        )

    def host(ops):
        return tuple(HostOp(op.name, op.read_bytes, op.write_bytes) for op in ops)

    return {"param_tensors": host(fwd), "finalize_param_grads": host(bwd[len(fwd) :])}
