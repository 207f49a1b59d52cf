"""Plans of the Triton kernels (lgf_ops/triton_kernels.py) for the static report. Kernel
authors: update this file when a kernel changes (plan_api.py says what a plan holds;
``gpu_static.py --list-loops --backend triton`` prints the loops the SASS has).

The launch itself (grid, tile constexprs, num_warps, tensors with their strides) is captured
from the real launcher (triton_capture.py), so a plan only says, per kernel name: its loops in
SASS order (static_range loops are unrolled and are not SASS loops) and the sectors each
program touches. ``OPS`` names the launcher of each direction; the kernels it launches and the
ATen ops it runs are counted from the capture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .plan_api import KernelWork, LoopSpec
from .traffic import BoxCounter, TensorMeta, pixel_window_sectors
from .triton_capture import Launch

NUM_SLOTS = 16  # csrc/lgf_math.h PartialSlot, lgf_ops.triton_kernels.NUM_SLOTS


def launch_threads(launch: Launch) -> int:
    return 32 * int(launch.kwargs.get("num_warps", 4))  # triton's default num_warps is 4


def _programs(a: dict, x) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """(n, c0, c1) of every channel block and the first pixel of every pixel block of the
    1-D grid of _tile_coords: pid -> (n, channel block, pixel block), pixel block fastest."""
    N, C, H, W = x.shape
    bc, bp = int(a["BLOCK_C"]), int(a["BLOCK_P"])
    groups = [(n, c0, min(c0 + bc, C)) for n in range(N) for c0 in range(0, C, bc)]
    return groups, np.arange(0, H * W, bp)


def _window_bytes(a: dict, name: str, x, radius: int) -> int:
    groups, p0s = _programs(a, x)
    return 32 * pixel_window_sectors(TensorMeta.of(a[name]), groups, p0s, int(a["BLOCK_P"]), radius)


def fwd_work(launch: Launch) -> KernelWork:
    """_lgf_fwd_kernel: reads the 3x3 window of x around its tile, writes y on the tile."""
    a = launch.named_args()
    x = a["x_ptr"]
    traffic = {
        "read x": _window_bytes(a, "x_ptr", x, 1),
        "write y": _window_bytes(a, "y_ptr", x, 0),
    }
    return KernelWork(
        launch_threads(launch),
        launch.programs(),
        [],
        traffic["read x"],
        traffic["write y"],
        0,
        traffic,
    )


def bwd_work(launch: Launch) -> KernelWork:
    """_lgf_bwd_kernel: x on the 5x5 window, dy on the 3x3 window, dx on the tile, and per
    program NUM_SLOTS x BLOCK_C partial sums into ws[n, pixel block, slot, c]."""
    a = launch.named_args()
    x, ws = a["x_ptr"], a["ws_ptr"]
    N, C, H, W = x.shape
    bc, bp = int(a["BLOCK_C"]), int(a["BLOCK_P"])
    traffic = {
        "read x": _window_bytes(a, "x_ptr", x, 2),
        "read dy": _window_bytes(a, "dy_ptr", x, 1),
        "write dx": _window_bytes(a, "dx_ptr", x, 0),
    }
    n, cb, pb = (
        g.ravel()
        for g in np.meshgrid(
            np.arange(N), np.arange(-(-C // bc)), np.arange(-(-(H * W) // bp)), indexing="ij"
        )
    )
    lo = np.stack([n, pb, 0 * n, cb * bc], axis=1)
    hi = np.stack([n + 1, pb + 1, 0 * n + NUM_SLOTS, np.minimum(cb * bc + bc, C)], axis=1)
    traffic["write ws"] = 32 * BoxCounter(TensorMeta.of(ws)).total(lo, hi)
    reads = traffic["read x"] + traffic["read dy"]
    writes = traffic["write dx"] + traffic["write ws"]
    ws_bytes = ws.numel() * ws.element_size()
    return KernelWork(
        launch_threads(launch), launch.programs(), [], reads, writes, ws_bytes, traffic
    )


@dataclass(frozen=True)
class TritonPlan:
    loops: tuple[LoopSpec, ...]
    work: Callable[[Launch], KernelWork]


KERNELS = {
    "_lgf_fwd_kernel": TritonPlan((), fwd_work),
    "_lgf_bwd_kernel": TritonPlan((), bwd_work),
}

OPS = {"forward": "lgf_forward", "backward": "lgf_backward"}  # launchers in triton_kernels
