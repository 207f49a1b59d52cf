"""Python launchers of the Triton kernels: lgf_forward and lgf_backward.

They allocate the outputs, choose the tiling (lgf_ops.triton_tiling) and launch the kernels
through torch.library.wrap_triton, so that torch.compile and torch.export trace into them when
they run inside the triton_op of lgf_ops.triton_op. Under Triton's CPU interpreter
(TRITON_INTERPRET=1) the kernels are launched directly, and not at all on fake tensors (shape
propagation only: the outputs are already allocated with the right layout).

Launches: forward 1; backward 2 (the one-pass backward kernel, then lgf_finish_grads_kernel).
"""

import contextlib
import os

import torch
import triton
from torch import Tensor
from torch._subclasses.fake_tensor import is_fake
from torch.library import wrap_triton

from . import triton_tiling as tiling
from ._layout import output_memory_format
from .triton_backward_nchw import lgf_backward_nchw_kernel
from .triton_backward_nhwc import lgf_backward_nhwc_kernel, lgf_backward_nhwc_kernel_144regs
from .triton_finish import lgf_finish_grads_kernel
from .triton_forward import lgf_forward_kernel
from .triton_math import NUM_SLOTS

Grads = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU (TRITON_INTERPRET=1 before triton's import)."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_device(x: Tensor) -> None:
    if x.device.type != "cuda" and not interpreting():
        raise RuntimeError(
            f"lgf_fused (triton backend): x is on {x.device}; Triton kernels need CUDA tensors "
            "(or TRITON_INTERPRET=1 set before triton is imported, to run them on the CPU)"
        )


def _launch(kernel, grid: tuple, args: tuple, num_warps: int | None, **constexprs) -> None:
    """kernel = wrap_triton(the @triton.jit kernel), written at the call site so that
    triton_op finds the kernels (torch.compile's cache keys include their source). num_warps
    None: the kernel's single autotune config sets it."""
    if interpreting() and any(isinstance(a, Tensor) and is_fake(a) for a in args):
        return  # shape propagation under the interpreter: nothing to compute
    device = next(a.device for a in args if isinstance(a, Tensor))
    guard = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    if num_warps is not None:
        constexprs["num_warps"] = num_warps
    with guard:  # Triton launches on the current CUDA device
        kernel[grid](*args, **constexprs)


def _params(weight, bias, g, gate, gamma) -> tuple[Tensor, ...]:
    # Per-channel tensors (and g, N*C values) are tiny: made contiguous so the kernels index
    # them as flat arrays. x, dy, y and dx are addressed through their strides instead.
    return tuple(t.contiguous() for t in (weight, bias, g, gate, gamma))


def lgf_forward(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    *,
    block_c: int | None = None,
    block_w: int | None = None,
    rows: int | None = None,
) -> Tensor:
    """y = x + gamma * (s_l*l + s_g*g) in one Triton pass over x; y in x's memory format.

    block_c / block_w (powers of two) and rows override the tiling (tests); None chooses.
    """
    _check_device(x)
    y = torch.empty_like(x, memory_format=output_memory_format(x))
    if y.numel() == 0:
        return y
    N, C, H, W = x.shape
    t = tiling.forward_tiling(
        x.shape, x.stride(), y.stride(), x.element_size(), block_c, block_w, rows
    )
    args = (x, *_params(weight, bias, g, gate, gamma), y, C, H, W, *x.stride(), *y.stride())
    args += (t.n_cblocks, t.n_strips, t.n_wblocks, t.rows)
    _launch(
        wrap_triton(lgf_forward_kernel),
        (t.programs(N),),
        args,
        t.num_warps,
        FP64=x.dtype == torch.float64,
        BLOCK_C=t.block_c,
        BLOCK_W=t.block_w,
        INDEX64=t.index64,
    )
    return y


def _upstream_like(dy: Tensor, channels_fastest: bool) -> Tensor:
    """dy with the lanes' dimension unit-stride, like x's; an expanded dy (stride 0, from
    .sum().backward()) is kept: it is only read."""
    if 0 in dy.stride():
        return dy
    fmt = torch.channels_last if channels_fastest else torch.contiguous_format
    return dy.contiguous(memory_format=fmt)


def _backward_main(dy, x, params, dx, elem_bytes, acc_bytes, overrides) -> tuple[Tensor, int]:
    """Launch the one-pass backward kernel; returns the workspace and its blocks per image."""
    N, C, H, W = x.shape
    fp64 = x.dtype == torch.float64
    strides = [dy.stride(), x.stride(), dx.stride()]
    if tiling.lanes_along_channels(x.shape, x.stride()):
        t = tiling.backward_nhwc_tiling(x.shape, strides, elem_bytes, acc_bytes, **overrides)
        kernel, warps = lgf_backward_nhwc_kernel, t.num_warps
        if not fp64 and warps == 1:
            kernel, warps = lgf_backward_nhwc_kernel_144regs, None  # its config: 1 warp
        extra = dict(BC=t.block_c, TW=t.block_w, EVEN_C=C % t.block_c == 0)
        grid_args = (t.n_cblocks, t.n_strips, t.n_wblocks, t.rows, t.groups)
    else:
        overrides = {k: v for k, v in overrides.items() if k in ("block_w", "rows")}
        t = tiling.backward_nchw_tiling(x.shape, strides, elem_bytes, acc_bytes, **overrides)
        kernel, warps, extra = lgf_backward_nchw_kernel, t.num_warps, dict(BW=t.block_w)
        grid_args = (t.n_strips, t.n_wblocks, t.rows)
    nb = t.n_strips * t.n_wblocks
    ws = torch.empty(
        (N, nb, int(NUM_SLOTS), C), dtype=dx.dtype if fp64 else torch.float32, device=x.device
    )
    args = (dy, x, *params, dx, ws, C, H, W, *dy.stride(), *x.stride(), *dx.stride(), *grid_args)
    _launch(
        wrap_triton(kernel),
        (t.programs(N),),
        args,
        warps,
        FP64=fp64,
        INDEX64=t.index64,
        **extra,
    )
    return ws, nb


def lgf_backward(
    dy: Tensor,
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    g: Tensor,
    gate: Tensor,
    gamma: Tensor,
    *,
    block_c: int | None = None,
    block_w: int | None = None,
    groups: int | None = None,
    rows: int | None = None,
) -> Grads:
    """(dx, dweight, dbias, dg, dgate, dgamma): dx in x's memory format, parameter gradients in
    the parameters' dtype, dg in g's dtype. Two launches, deterministic (no atomics).

    block_c, block_w, groups and rows override the tiling (tests); None chooses.
    """
    _check_device(x)
    if dy.shape != x.shape or dy.device != x.device:
        raise ValueError(
            f"lgf_fused backward: dy must have x's shape {tuple(x.shape)} on {x.device}, "
            f"got {tuple(dy.shape)} on {dy.device}"
        )
    N, C, H, W = x.shape
    dx = torch.empty_like(x, memory_format=output_memory_format(x))
    # the finishing kernel writes every entry; an empty x has all-zero gradients
    new = torch.zeros if x.numel() == 0 else torch.empty
    pz = dict(dtype=weight.dtype, device=x.device)
    dweight, dbias, dgate, dgamma = (new(t.shape, **pz) for t in (weight, bias, gate, gamma))
    dg = new(g.shape, dtype=g.dtype, device=x.device)
    if x.numel() == 0:
        return dx, dweight, dbias, dg, dgate, dgamma
    params = _params(weight, bias, g, gate, gamma)
    dy = _upstream_like(dy, tiling.lanes_along_channels(x.shape, x.stride()))
    fp64 = x.dtype == torch.float64
    overrides = dict(block_c=block_c, block_w=block_w, groups=groups, rows=rows)
    ws, nb = _backward_main(dy, x, params, dx, x.element_size(), 8 if fp64 else 4, overrides)
    bcf, bb, warps = tiling.finish_tiling(C)
    args = (ws, params[2], params[3], dweight, dbias, dg, dgate, dgamma, N, C, nb)
    _launch(
        wrap_triton(lgf_finish_grads_kernel),
        (tiling.cdiv(C, bcf), int(NUM_SLOTS)),
        args,
        warps,
        FP64=fp64,
        BCF=bcf,
        BB=bb,
    )
    return dx, dweight, dbias, dg, dgate, dgamma
