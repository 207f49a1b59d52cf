"""Plans of the Triton kernels (lgf_ops/triton_*.py) for the static report. Kernel authors:
update this file when a kernel changes (plan_api.py says what a plan holds;
``gpu_static.py --list-loops --backend triton`` prints the loops the SASS has).

The launch itself (grid, tile constexprs, num_warps, tensors with their strides) is captured
from the real launcher (triton_capture.py), so a plan only says, per kernel name: its loops in
SASS order (static_range loops are unrolled and are not SASS loops) with their trips, and the
sectors each program touches. ``OPS`` names the launcher of each direction (in
lgf_ops.triton_launch); the kernels it launches and the ATen ops it runs are counted from the
capture.

The row loops of the forward and the NCHW backward are ``tl.range(..., loop_unroll_factor=3)``:
Triton emits the 3x unrolled loop (trips n // 3) and a remainder loop (n % 3), both given here
as trips (marker None); the peeled last image row sits after them, in code counted once per
program. The channels_last backward has one row loop per column group, not unrolled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .plan_api import KernelWork, LoopSpec
from .traffic import BoxCounter, TensorMeta, clip_boxes
from .triton_capture import Launch

NUM_SLOTS = 16  # csrc/lgf_math.h PartialSlot, lgf_ops.triton_math.NUM_SLOTS


def launch_threads(launch: Launch) -> int:
    return 32 * int(launch.kwargs.get("num_warps", 4))  # triton's default num_warps is 4


def _grid(a: dict, n_cblocks: int) -> tuple[np.ndarray, ...]:
    """(n, channel block, strip, column block) of every program, as split_program_id does."""
    N = a["x_ptr"].shape[0]
    return tuple(
        g.ravel()
        for g in np.meshgrid(
            np.arange(N),
            np.arange(n_cblocks),
            np.arange(int(a["n_strips"])),
            np.arange(int(a["n_wblocks"])),
            indexing="ij",
        )
    )


def _bytes(t, lo, hi) -> int:
    """Sector-exact bytes of the boxes [lo, hi) of tensor t (clipped to it)."""
    meta = TensorMeta.of(t)
    lo, hi = clip_boxes(meta, np.asarray(lo), np.asarray(hi))
    return 32 * BoxCounter(meta).total(lo, hi)


def _box(n, c0, c1, h0, h1, w0, w1) -> np.ndarray:
    return np.stack(np.broadcast_arrays(n, c0, h0, w0), axis=1), np.stack(
        np.broadcast_arrays(n + 1, c1, h1, w1), axis=1
    )


def _row_trips(n_iter: np.ndarray) -> list[float]:
    """Trips of the 3x unrolled row loop and of its remainder loop, averaged over programs."""
    return [float(np.mean(n_iter // 3)), float(np.mean(n_iter % 3))]


def _workspace(launch: Launch, a: dict, n, c0, c1, rs, wb) -> int:
    """Bytes of the partial-sum rows the programs write: ws[n, block, slot, c0:c1]."""
    ws = a["ws_ptr"]
    block = rs * int(a["n_wblocks"]) + wb
    lo = np.stack([n, block, 0 * n, c0], axis=1)
    hi = np.stack([n + 1, block + 1, 0 * n + NUM_SLOTS, c1], axis=1)
    return 32 * BoxCounter(TensorMeta.of(ws)).total(lo, hi)


def fwd_work(launch: Launch) -> KernelWork:
    """lgf_forward_kernel: x on the tile's rows and columns +-1, y on the tile."""
    a = launch.named_args()
    x, y = a["x_ptr"], a["y_ptr"]
    N, C, H, W = x.shape
    bc, bw, rows = int(a["BLOCK_C"]), int(a["BLOCK_W"]), int(a["rows_per_prog"])
    n, cb, rs, wb = _grid(a, int(a["n_cblocks"]))
    c0, w0, h0 = cb * bc, wb * bw, rs * rows
    nrows = np.minimum(rows, H - h0)
    traffic = {
        "read x": _bytes(x, *_box(n, c0, c0 + bc, h0 - 1, h0 + nrows + 1, w0 - 1, w0 + bw + 1)),
        "write y": _bytes(y, *_box(n, c0, c0 + bc, h0, h0 + nrows, w0, w0 + bw)),
    }
    units = _row_trips(np.minimum(nrows, H - 1 - h0))
    return KernelWork(
        launch_threads(launch), launch.programs(), units, traffic["read x"],
        traffic["write y"], 0, traffic,
    )  # fmt: skip


def bwd_nchw_work(launch: Launch) -> KernelWork:
    """lgf_backward_nchw_kernel: one channel, BW lanes of columns w0-1 .. w0+BW-2 (outputs
    w0 .. w0+BW-3), rows h0-1 .. h0+nrows of dl: x on rows h0-2 .. h0+nrows+1 and columns
    w0-2 .. w0+BW-1, dy on the lanes' columns, dx on the outputs; 16 partial sums."""
    a = launch.named_args()
    x = a["x_ptr"]
    N, C, H, W = x.shape
    bw, rows = int(a["BW"]), int(a["rows_per_prog"])
    n, c, rs, wb = _grid(a, C)
    w0, h0 = wb * (bw - 2), rs * rows
    nrows = np.minimum(rows, H - h0)
    dy, dx = a["dy_ptr"], a["dx_ptr"]
    traffic = {
        "read x": _bytes(x, *_box(n, c, c + 1, h0 - 2, h0 + nrows + 2, w0 - 2, w0 + bw)),
        "read dy": _bytes(dy, *_box(n, c, c + 1, h0 - 1, h0 + nrows + 1, w0 - 1, w0 + bw - 1)),
        "write dx": _bytes(dx, *_box(n, c, c + 1, h0, h0 + nrows, w0, w0 + bw - 2)),
        "write ws": _workspace(launch, a, n, c, c + 1, rs, wb),
    }
    n_in = np.maximum(np.minimum(nrows, H - 1 - h0), 1)
    return _backward_work(launch, a, traffic, _row_trips(n_in - 1))


def bwd_nhwc_work(launch: Launch) -> KernelWork:
    """lgf_backward_nhwc_kernel: BC channels, `groups` groups of TW columns one after the
    other; per group x on rows h0-2 .. h0+nrows+1 and columns w0-2 .. w0+TW+1, dy on rows
    h0-1 .. h0+nrows and columns w0-1 .. w0+TW, dx on the group; 16 x BC partial sums."""
    a = launch.named_args()
    x = a["x_ptr"]
    N, C, H, W = x.shape
    bc, tw, groups = int(a["BC"]), int(a["TW"]), int(a["groups"])
    rows = int(a["rows_per_prog"])
    n, cb, rs, wb = _grid(a, int(a["n_cblocks"]))
    c0, h0 = cb * bc, rs * rows
    nrows = np.minimum(rows, H - h0)
    traffic = {"read x": 0, "read dy": 0, "write dx": 0}
    ran = np.zeros(n.shape, dtype=np.int64)  # groups a program runs (w0 < W)
    for gi in range(groups):
        w0 = (wb * groups + gi) * tw
        on = w0 < W
        ran += on
        sel = (n[on], c0[on], c0[on] + bc, h0[on], nrows[on], w0[on])
        nn, cc0, cc1, hh0, nr, ww0 = sel
        traffic["read x"] += _bytes(
            x, *_box(nn, cc0, cc1, hh0 - 2, hh0 + nr + 2, ww0 - 2, ww0 + tw + 2)
        )
        traffic["read dy"] += _bytes(
            a["dy_ptr"], *_box(nn, cc0, cc1, hh0 - 1, hh0 + nr + 1, ww0 - 1, ww0 + tw + 1)
        )
        traffic["write dx"] += _bytes(
            a["dx_ptr"], *_box(nn, cc0, cc1, hh0, hh0 + nr, ww0, ww0 + tw)
        )
    traffic["write ws"] = _workspace(launch, a, n, c0, np.minimum(c0 + bc, C), rs, wb)  # fmt: skip
    # the row loop (rows h0-1 .. h0+nrows of dl) runs inside the group loop, for the groups
    # that start inside the image
    inner = float(np.mean(ran * (nrows + 2))) / groups
    return _backward_work(launch, a, traffic, [float(groups), inner])


def _backward_work(launch: Launch, a: dict, traffic: dict, units: list[float]) -> KernelWork:
    ws = a["ws_ptr"]
    reads = traffic["read x"] + traffic["read dy"]
    writes = traffic["write dx"] + traffic["write ws"]
    ws_bytes = ws.numel() * ws.element_size()
    return KernelWork(
        launch_threads(launch), launch.programs(), units, reads, writes, ws_bytes, traffic
    )


def finish_work(launch: Launch) -> KernelWork:
    """lgf_finish_grads_kernel: program (channel block, slot) reads its slot of the workspace
    (the S_TSG program also S_DZL and S_DZG) and g, writes its gradient entries. Both arms of
    its slot test are counted for every program (the report's upper bound)."""
    a = launch.named_args()
    ws = a["ws_ptr"]
    N, NB, _, C = ws.shape
    bcf, bb = int(a["BCF"]), int(a["BB"])
    boxes = []  # (slot, channel block) of every workspace slice a program reads
    for cb in range(-(-C // bcf)):
        for slot in range(NUM_SLOTS):
            boxes += [(slot, cb)] + ([(2, cb), (3, cb)] if slot == 1 else [])
    sl, cbs = (np.array(v) for v in zip(*boxes))
    lo = np.stack([0 * sl, 0 * sl, sl, cbs * bcf], axis=1)
    hi = np.stack([0 * sl + N, 0 * sl + NB, sl + 1, np.minimum(cbs * bcf + bcf, C)], axis=1)
    reads = 32 * BoxCounter(TensorMeta.of(ws)).total(lo, hi)
    cb = np.arange(-(-C // bcf) * NUM_SLOTS)
    reads += len(cb) * N * bcf * a["g_ptr"].element_size()
    grads = ("dweight_ptr", "dbias_ptr", "dg_ptr", "dgate_ptr", "dgamma_ptr")
    writes = sum(a[k].numel() * a[k].element_size() for k in grads)
    chunks = -(-NB // bb)
    # loops (SASS order): the S_TSG arm's image loop with its three block loops, then the
    # other arm's image loop with its block loop
    units = [float(N), float(chunks), float(chunks), float(chunks), float(N), float(chunks)]
    return KernelWork(
        launch_threads(launch), launch.programs(), units, reads, writes, 0,
        {"read ws": reads, "write grads": writes},
    )  # fmt: skip


@dataclass(frozen=True)
class TritonPlan:
    loops: tuple[LoopSpec, ...]
    work: Callable[[Launch], KernelWork]


_ROW_LOOPS = (LoopSpec("rows, 3x unrolled"), LoopSpec("rows, remainder"))

KERNELS = {
    "lgf_forward_kernel": TritonPlan(_ROW_LOOPS, fwd_work),
    "lgf_backward_nchw_kernel": TritonPlan(_ROW_LOOPS, bwd_nchw_work),
    "lgf_backward_nhwc_kernel": TritonPlan(
        (LoopSpec("column groups"), LoopSpec("rows h0-1 .. h0+nrows")), bwd_nhwc_work
    ),
    "lgf_finish_grads_kernel": TritonPlan(
        (
            LoopSpec("S_TSG: images"),
            LoopSpec("S_TSG: tsg blocks"),
            LoopSpec("S_TSG: dz_l blocks"),
            LoopSpec("S_TSG: dz_g blocks"),
            LoopSpec("other slots: images"),
            LoopSpec("other slots: blocks"),
        ),
        finish_work,
    ),
}

OPS = {"forward": "lgf_forward", "backward": "lgf_backward"}  # launchers in triton_launch
