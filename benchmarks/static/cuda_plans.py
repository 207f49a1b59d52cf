"""Plans of the CUDA kernels (csrc/cuda) for the static report. Kernel authors: update this file
when a kernel changes (plan_api.py says what a plan holds; ``gpu_static.py --list-loops``
prints the loops the SASS has).

- SOURCE_FACTS: the tile geometry below mirrors csrc/cuda/lgf_tile.cuh; each line must still be
  in that file, else the report refuses to run (the plan is out of date).
- KERNELS: per kernel (the name of the __global__ template, any instantiation): its loops in
  SASS order and what one launch does for a shape (blocks, loop units, sector-exact traffic).
- OPS: per (direction, layout) the kernels one call of the op launches, and the ATen work the
  wrapper does beside them: "param_tensors" (ParamTensors: the parameters converted to the
  compute dtype) and "finalize_param_grads" (lgf_ops.cpp) are counted by running the CPU
  wrapper, which calls the same two, under a TorchDispatchMode (see host_ops.py);
  PLAN_HOST_OPS gives the ATen ops only the CUDA wrapper runs (ws.sum).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .plan_api import HostOp, KernelWork, LoopSpec, strided_counts, warp_units
from .traffic import BoxCounter, TensorMeta, clip_boxes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TILE_HEADER = os.path.join(REPO, "csrc", "cuda", "lgf_tile.cuh")

SOURCE_FACTS = (
    "constexpr int kThreads = 256;",
    "constexpr int64_t kMaxBlocks = int64_t(1) << 20;",
    "constexpr int kNchwTH = 16;",
    "constexpr int kNchwTW = 32;",
    "constexpr int kNchwStrip = 4;",
    "constexpr int kNhwcTH = 8;",
    "constexpr int kNhwcTW = 16;",
    "constexpr int kNhwcStrip = 4;",
    "static constexpr int kForwardCB = sizeof(T) == 8 ? 16 : 32;",
    "static constexpr int kBackwardCB = sizeof(T) == 8 ? 8 : 16;",
)
THREADS, MAX_BLOCKS = 256, 1 << 20
NCHW_TH, NCHW_TW, NCHW_STRIP = 16, 32, 4
NHWC_TH, NHWC_TW, NHWC_STRIP = 8, 16, 4
NUM_SLOTS = 16  # csrc/lgf_math.h PartialSlot


def forward_cb(acc_size: int) -> int:
    return 16 if acc_size == 8 else 32


def backward_cb(acc_size: int) -> int:
    return 8 if acc_size == 8 else 16


def check_source_facts(header: str = TILE_HEADER) -> None:
    with open(header) as f:
        text = re.sub(r"\s+", " ", f.read())
    missing = [fact for fact in SOURCE_FACTS if fact not in text]
    if missing:
        raise RuntimeError(
            f"benchmarks/static/cuda_plans.py is out of date: {header} no longer says "
            + "; ".join(repr(m) for m in missing)
        )


@dataclass(frozen=True)
class Case:
    """One op call: the shape, the layout of x (and y/dx/dy alike) and its dtypes."""

    shape: tuple[int, int, int, int]
    layout: str  # "nchw" | "channels_last"
    itemsize: int  # bytes per element of x
    acc_size: int  # bytes of the compute type (4, or 8 for fp64)

    def tensor(self) -> TensorMeta:
        N, C, H, W = self.shape
        if self.layout == "nchw":
            strides = (C * H * W, H * W, W, 1)
        else:
            strides = (H * W * C, 1, W * C, C)
        return TensorMeta(self.shape, strides, self.itemsize)

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape))


def _grid(*sizes: int) -> list[np.ndarray]:
    return [g.ravel() for g in np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")]


def _boxes(t: TensorMeta, n, c0, c1, h0, h1, w0, w1) -> tuple[np.ndarray, np.ndarray]:
    lo = np.stack([n, c0, h0, w0], axis=1)
    hi = np.stack([n + 1, c1, h1, w1], axis=1)
    return clip_boxes(t, lo, hi)


def _tile_traffic(case: Case, tiles, halos: dict[str, int], writes: tuple[str, ...]) -> dict:
    """Sectors per tensor: tiles = (n, c0, c1, h0, w0, TH, TW) arrays; halos: reads of a
    tensor over the tile grown by that many pixels; writes: tensors written over the tile."""
    t = case.tensor()
    counter = BoxCounter(t)
    n, c0, c1, h0, w0, th, tw = tiles
    out = {}
    for name, r in halos.items():
        out[f"read {name}"] = 32 * counter.total(
            *_boxes(t, n, c0, c1, h0 - r, h0 + th + r, w0 - r, w0 + tw + r)
        )
    for name in writes:
        out[f"write {name}"] = 32 * counter.total(*_boxes(t, n, c0, c1, h0, h0 + th, w0, w0 + tw))
    return out


def _finish(
    case: Case, threads: int, items: int, units: list[float], traffic: dict, ws: int = 0
) -> KernelWork:
    reads = sum(v for k, v in traffic.items() if k.startswith("read"))
    writes = sum(v for k, v in traffic.items() if k.startswith("write"))
    return KernelWork(
        threads=threads,
        blocks=min(items, MAX_BLOCKS),
        units=[items / min(items, MAX_BLOCKS)] + units,
        read_bytes=reads,
        write_bytes=writes,
        workspace_bytes=ws,
        detail={"items": items, **traffic},
    )


def forward_nchw(case: Case) -> KernelWork:
    N, C, H, W = case.shape
    tiles_h, tiles_w = -(-H // NCHW_TH), -(-W // NCHW_TW)
    tid = np.arange(THREADS)
    n, c, th, tw = _grid(N, C, tiles_h, tiles_w)
    tiles = (n, c, c + 1, th * NCHW_TH, tw * NCHW_TW, NCHW_TH, NCHW_TW)
    units = [
        warp_units(strided_counts((NCHW_TH + 2) * (NCHW_TW + 2), tid, THREADS)),
        warp_units(strided_counts(NCHW_TH, tid // NCHW_TW, THREADS // NCHW_TW)),
    ]
    return _finish(case, THREADS, n.size, units, _tile_traffic(case, tiles, {"x": 1}, ("y",)))


def forward_nhwc(case: Case) -> KernelWork:
    N, C, H, W = case.shape
    cb = forward_cb(case.acc_size)
    tiles_h, tiles_w = -(-H // NHWC_TH), -(-W // NHWC_TW)
    tid = np.arange(THREADS)
    n, b, th, tw = _grid(N, -(-C // cb), tiles_h, tiles_w)
    tiles = (n, b * cb, b * cb + cb, th * NHWC_TH, tw * NHWC_TW, NHWC_TH, NHWC_TW)
    units = [
        warp_units(strided_counts((NHWC_TH + 2) * (NHWC_TW + 2) * cb, tid, THREADS)),
        warp_units(strided_counts(NHWC_TH * NHWC_TW, tid // cb, THREADS // cb)),
    ]
    return _finish(case, THREADS, n.size, units, _tile_traffic(case, tiles, {"x": 1}, ("y",)))


def backward_strips(case: Case) -> tuple[int, int]:
    """backward_plan(): strips of tile rows per plane and tile columns."""
    _, _, H, W = case.shape
    nhwc = case.layout == "channels_last"
    TH, TW, strip = (NHWC_TH, NHWC_TW, NHWC_STRIP) if nhwc else (NCHW_TH, NCHW_TW, NCHW_STRIP)
    return -(-(-(-H // TH)) // strip), -(-W // TW)


def _backward(case: Case, cb: int | None) -> KernelWork:
    """Both backward kernels: cb None is the NCHW kernel (one channel per block)."""
    N, C, H, W = case.shape
    nhwc = cb is not None
    TH, TW, strip = (NHWC_TH, NHWC_TW, NHWC_STRIP) if nhwc else (NCHW_TH, NCHW_TW, NCHW_STRIP)
    cblk = cb or 1
    c_blocks = -(-C // cblk)
    tiles_h = -(-H // TH)
    strips, tiles_w = backward_strips(case)
    items = N * c_blocks * strips * tiles_w
    tid = np.arange(THREADS)
    # a thread's slot along the loops over pixels: its pixel lane (NHWC) or its thread (NCHW)
    lane, lanes = (tid // cb, THREADS // cb) if nhwc else (tid, THREADS)
    per_pixel = cblk if nhwc else 1
    tiles_per_strip = np.bincount(np.arange(tiles_h) // strip).mean()
    units = [
        float(tiles_per_strip),
        warp_units(strided_counts((TH + 4) * (TW + 4) * per_pixel, tid, THREADS)),
        warp_units(strided_counts((TH + 2) * (TW + 2), lane, lanes)),
        warp_units(
            strided_counts(TH * TW, lane, lanes)
            if nhwc
            else strided_counts(TH, tid // TW, THREADS // TW)
        ),
        warp_units(strided_counts(NUM_SLOTS * cblk, tid, THREADS)),
    ]
    n, b, th, tw = _grid(N, c_blocks, tiles_h, tiles_w)
    tiles = (n, b * cblk, b * cblk + cblk, th * TH, tw * TW, TH, TW)
    traffic = _tile_traffic(case, tiles, {"x": 2, "dy": 1}, ("dx",))
    ws_tiles = strips * tiles_w
    ws = TensorMeta(
        (N * C, NUM_SLOTS, strips, tiles_w),
        (NUM_SLOTS * ws_tiles, ws_tiles, tiles_w, 1),
        case.acc_size,
    )
    n, b, s, tw = _grid(N, c_blocks, strips, tiles_w)
    lo = np.stack([n * C + b * cblk, 0 * n, s, tw], axis=1)
    hi = np.stack(
        [n * C + np.minimum(b * cblk + cblk, C), 0 * n + NUM_SLOTS, s + 1, tw + 1], axis=1
    )
    traffic["write ws"] = 32 * BoxCounter(ws).total(lo, hi)
    return _finish(case, THREADS, items, units, traffic, ws.nbytes)


def backward_nchw(case: Case) -> KernelWork:
    return _backward(case, None)


def backward_nhwc(case: Case) -> KernelWork:
    return _backward(case, backward_cb(case.acc_size))


@dataclass(frozen=True)
class KernelPlan:
    loops: tuple[LoopSpec, ...]  # the loops after the item loop are the plan's own
    work: Callable[[Case], KernelWork]


ITEM = LoopSpec("items of the grid-stride loop")
_FWD = (
    ITEM,
    LoopSpec("x tile + halo into shared memory", "STS"),
    LoopSpec("outputs", "STG"),
)
_BWD = (
    ITEM,
    LoopSpec("tile rows of the strip"),
    LoopSpec("x tile + 2-pixel halo into shared memory", "STS"),
    LoopSpec("dl on the tile + 1-pixel halo (one dy load each)"),
    LoopSpec("dx outputs", "STG"),
    LoopSpec("workspace writes after the block reduction", "STG"),
)
KERNELS = {
    "forward_nchw_kernel": KernelPlan(_FWD, forward_nchw),
    "forward_nhwc_kernel": KernelPlan(_FWD, forward_nhwc),
    "backward_nchw_kernel": KernelPlan(_BWD, backward_nchw),
    "backward_nhwc_kernel": KernelPlan(_BWD, backward_nhwc),
}


def ws_sum(case: Case) -> list[HostOp]:
    """fused_backward_cuda.cu: partials = ws.sum(2), ws (N*C, NUM_SLOTS, ws_tiles) in acc."""
    N, C, _, _ = case.shape
    strips, tiles_w = backward_strips(case)
    ws = N * C * NUM_SLOTS * strips * tiles_w * case.acc_size
    return [HostOp("aten.sum.dim_IntList (ws.sum(2))", ws, N * C * NUM_SLOTS * case.acc_size)]


# ATen ops only the CUDA wrapper runs, by the name OpPlan.host uses for them
PLAN_HOST_OPS = {"ws.sum": ws_sum}


@dataclass(frozen=True)
class OpPlan:
    kernels: tuple[str, ...]
    # host-side ATen work in call order: "param_tensors" and "finalize_param_grads" (counted by
    # running the CPU wrapper, host_ops.py) or a key of PLAN_HOST_OPS
    host: tuple[str, ...]


OPS = {
    ("forward", "nchw"): OpPlan(("forward_nchw_kernel",), ("param_tensors",)),
    ("forward", "channels_last"): OpPlan(("forward_nhwc_kernel",), ("param_tensors",)),
    ("backward", "nchw"): OpPlan(
        ("backward_nchw_kernel",), ("param_tensors", "ws.sum", "finalize_param_grads")
    ),
    ("backward", "channels_last"): OpPlan(
        ("backward_nhwc_kernel",), ("param_tensors", "ws.sum", "finalize_param_grads")
    ),
}
