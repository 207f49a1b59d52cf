"""Plans of the CUDA kernels (csrc/cuda) for the static report. Kernel authors: update this file
when a kernel changes (plan_api.py says what a plan holds; ``gpu_static.py --list-loops``
prints the loops the SASS has).

- The launch geometry (tile shapes, block sizes, strips) mirrors csrc/cuda/tile_plan.cuh:
  ``nchw_plan`` / ``nhwc_plan`` below follow the C++ functions of the same names line for line.
  SOURCE_FACTS are lines of that header the mirror relies on (the report refuses to run when
  one is gone), and tests/test_cuda.py compares the mirror with the C++ plans on many shapes.
- KERNELS: per kernel (the name of the __global__ template, any instantiation): its loops in
  SASS order and what one launch does for a shape (blocks, loop units, sector-exact traffic).
- ``op_plan``: the kernels one call of the op launches for a case, as the wrappers choose them
  (contiguous inputs: the 16-byte kernels; NCHW rows wider than one tile: the wide backward),
  and the ATen work beside them: none (the parameters are read in their own dtype and the
  finalize kernel replaces the old workspace reduction + finalize_param_grads).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .plan_api import HostOp, KernelWork, LoopSpec, strided_counts, warp_units
from .traffic import BoxCounter, TensorMeta, clip_boxes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TILE_HEADER = os.path.join(REPO, "csrc", "cuda", "tile_plan.cuh")

SOURCE_FACTS = (
    "constexpr int kThreads = 256;",
    "constexpr int kNchwRows = 4;",
    "constexpr int kNchwMaxRowVecs = 64;",
    "constexpr int kForwardSmemBudget = 32 * 1024;",
    "constexpr int kBackwardSmemBudget = 80 * 1024;",
    "constexpr int64_t kTargetBlocks = 1024;",
    "constexpr int64_t kMaxPartials = 1024;",
    "constexpr int nchw_backward_rows(int elem_bytes) { return elem_bytes == 2 ? 7 : 4; }",
    "static constexpr int kTH = 16, kTW = 16;",
    "static constexpr int kForwardCB = 64 / static_cast<int>(sizeof(scalar_t));",
    "static constexpr int kBackwardPair = sizeof(scalar_t) == 2 ? 2 : 1;",
    "static constexpr int kBackwardCB = sizeof(scalar_t) == 8 ? 8 : 16 * kBackwardPair;",
    "const int64_t hx = backward ? 2 : 1, instr = backward ? 80 : 45, setup = backward ? 700 "
    ": 300;",
)
THREADS, NCHW_ROWS, NCHW_MAX_ROW_VECS = 256, 4, 64
FWD_SMEM, BWD_SMEM = 32 * 1024, 80 * 1024
TARGET_BLOCKS, MAX_PARTIALS = 1024, 1024
NHWC_TH = NHWC_TW = 16
NUM_SLOTS = 16  # csrc/lgf_math.h PartialSlot
SLOT_STRIDE = THREADS + 1  # kSlotStride


def check_source_facts(header: str = TILE_HEADER) -> None:
    with open(header) as f:
        text = re.sub(r"\s+", " ", f.read())
    missing = [fact for fact in SOURCE_FACTS if fact not in text]
    if missing:
        raise RuntimeError(
            f"benchmarks/static/cuda_plans.py is out of date: {header} no longer says "
            + "; ".join(repr(m) for m in missing)
        )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def nchw_backward_rows(elem: int) -> int:
    return 7 if elem == 2 else 4


def nhwc_forward_cb(elem: int) -> int:
    return 64 // elem


def nhwc_backward_pair(elem: int) -> int:
    return 2 if elem == 2 else 1


def nhwc_backward_cb(elem: int) -> int:
    return 8 if elem == 8 else 16 * nhwc_backward_pair(elem)


@dataclass(frozen=True)
class ItemGrid:
    tiles_w: int
    tiles_h: int
    strip_len: int
    strips: int
    c_blocks: int
    items: int
    partials: int


def item_grid(backward: bool, N, c_blocks, tiles_h, tiles_w, target=TARGET_BLOCKS) -> ItemGrid:
    """tile_plan.cuh fill_item_grid."""
    strips, strip_len = tiles_h, 1
    if backward and tiles_h > 0:
        columns = max(1, N * c_blocks * tiles_w)
        strips = min(tiles_h, _cdiv(target, columns))
        strips = max(1, min(strips, MAX_PARTIALS // max(1, N * tiles_w)))
        strip_len = _cdiv(tiles_h, strips)
        strips = _cdiv(tiles_h, strip_len)
    items = N * c_blocks * strips * tiles_w
    return ItemGrid(tiles_w, tiles_h, strip_len, strips, c_blocks, items, strips * tiles_w)


@dataclass(frozen=True)
class NchwPlan:
    grid: ItemGrid
    threads: int
    V: int
    R: int
    twv: int
    tw: int
    tr: int
    th: int
    rwv: int
    rp: int
    smem_bytes: int
    chunked: bool


def nchw_plan(backward: bool, elem: int, acc: int, N, C, H, W, target=TARGET_BLOCKS) -> NchwPlan:
    """tile_plan.cuh nchw_plan."""
    V = 16 // elem
    R = nchw_backward_rows(elem) if backward else NCHW_ROWS
    extra = 2 if backward else 0
    row_vecs = _cdiv(W, V)
    chunks = _cdiv(row_vecs, NCHW_MAX_ROW_VECS)
    twv = max(1, _cdiv(row_vecs, max(1, chunks)))
    rwv = twv + 2
    sw = rwv * V
    row_bytes = sw * elem

    def smem_for(th):
        if backward:
            return (2 * th + 6) * row_bytes + (th + 2) * sw * acc
        return (th + 2) * row_bytes

    def threads_for(tr):
        return min(THREADS, 32 * _cdiv(max(tr * twv, rwv), 32))

    budget = BWD_SMEM if backward else FWD_SMEM
    tr_max = THREADS // twv
    while tr_max > 1 and smem_for(tr_max * R - extra) > budget:
        tr_max -= 1
    hx, instr, setup = (2, 80, 700) if backward else (1, 45, 300)
    best = best_bytes = -1.0
    tr_best = 1
    for tr in range(tr_max, 0, -1):
        th = tr * R - extra
        tiles = _cdiv(H, th)
        blocks = 1 if backward else tiles
        rows = tiles * (th + 2 * hx) - 2 * hx + H
        if backward:
            rows += tiles * (th + 2) - 2
        nbytes = float(rows) * W * elem
        issue = (float(tiles) * R * V * instr + float(blocks) * setup) * threads_for(tr) / 9.0
        cost = max(issue, nbytes)
        if best < 0 or cost < best or (cost == best and nbytes < best_bytes):
            best, best_bytes, tr_best = cost, nbytes, tr
    th = tr_best * R - extra
    threads = threads_for(tr_best)
    tiles_h = _cdiv(H, th)
    reduce_bytes = (threads // 32) * 16 * acc if backward else 0
    tiles_w = _cdiv(row_vecs, twv) if W > 0 else 0
    grid = item_grid(backward, N, C, tiles_h, tiles_w, target)
    smem = max(smem_for(th), reduce_bytes)
    return NchwPlan(
        grid, threads, V, R, twv, twv * V, tr_best, th, rwv, threads // rwv, smem, tiles_w > 1
    )


@dataclass(frozen=True)
class NhwcPlan:
    grid: ItemGrid
    cb: int
    smem_bytes: int


def nhwc_plan(backward: bool, cb: int, elem: int, acc: int, N, C, H, W, target=TARGET_BLOCKS):
    """tile_plan.cuh nhwc_plan."""
    pix1 = (NHWC_TH + 2) * (NHWC_TW + 2)
    pix2 = (NHWC_TH + 4) * (NHWC_TW + 4)
    if backward:
        tiles = (pix2 + pix1) * cb * elem + pix1 * cb * acc
    else:
        tiles = pix1 * cb * elem
    reduce_bytes = SLOT_STRIDE * 16 * acc if backward else 0
    grid = item_grid(backward, N, _cdiv(C, cb), _cdiv(H, NHWC_TH), _cdiv(W, NHWC_TW), target)
    return NhwcPlan(grid, cb, max(tiles, reduce_bytes))


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


def _sectors(t: TensorMeta, lo: list, hi: list) -> int:
    """Bytes of the distinct 32-byte sectors of each box [lo, hi) (clipped to the tensor)."""
    lo, hi = clip_boxes(t, np.stack(lo, axis=1), np.stack(hi, axis=1))
    return 32 * BoxCounter(t).total(lo, hi)


def _passes(rows: int, rp: int, rwv: int, threads: int) -> np.ndarray:
    """Copies per thread of a region of `rows` rows (tile_loader.cuh LoadColumn.passes)."""
    r = np.arange(threads) // rwv
    return np.where((r < rp) & (r < rows), (rows - 1 - r) // max(rp, 1) + 1, 0)


@dataclass
class Work:
    """A launch per the plan, before it becomes a KernelWork: units per loop role."""

    threads: int
    blocks: int
    units: dict[str, float]
    traffic: dict[str, int]
    smem: int
    ws: int = 0
    detail: dict = field(default_factory=dict)


def _nchw_tiles(case: Case, p: NchwPlan):
    """(n, c, h0, w0) of every tile of an NCHW launch (one per tile row, not per strip)."""
    N, C, _, _ = case.shape
    n, c, th, tw = _grid(N, C, p.grid.tiles_h, p.grid.tiles_w)
    return n, c, th * p.th, tw * p.tw


def forward_nchw(case: Case) -> Work:
    N, C, H, W = case.shape
    p = nchw_plan(False, case.itemsize, case.acc_size, N, C, H, W)
    t = case.tensor()
    n, c, h0, w0 = _nchw_tiles(case, p)
    traffic = {
        "read x": _sectors(
            t, [n, c, h0 - 1, w0 - p.V], [n + 1, c + 1, h0 + p.th + 1, w0 + p.tw + p.V]
        ),
        "write y": _sectors(t, [n, c, h0, w0], [n + 1, c + 1, h0 + p.th, w0 + p.tw]),
    }
    units = {"copy pairs": warp_units(_passes(p.th + 2, p.rp, p.rwv, p.threads) // 2)}
    return Work(p.threads, p.grid.items, units, traffic, p.smem_bytes, detail=_nchw_detail(p))


def _nchw_detail(p: NchwPlan) -> dict:
    return {
        "tile": f"{p.th} x {p.tw}",
        "threads": p.threads,
        "outputs_per_thread": f"{p.R} rows x {p.V}",
        "tiles_h": p.grid.tiles_h,
        "tiles_w": p.grid.tiles_w,
        "strip_len": p.grid.strip_len,
        "dynamic_smem": p.smem_bytes,
    }


def backward_nchw(case: Case) -> Work:
    N, C, H, W = case.shape
    p = nchw_plan(True, case.itemsize, case.acc_size, N, C, H, W)
    t = case.tensor()
    n, c, h0, w0 = _nchw_tiles(case, p)
    th, tw, V = p.th, p.tw, p.V
    traffic = {
        "read x": _sectors(t, [n, c, h0 - 2, w0 - V], [n + 1, c + 1, h0 + th + 2, w0 + tw + V]),
        "read dy": _sectors(t, [n, c, h0 - 1, w0 - V], [n + 1, c + 1, h0 + th + 1, w0 + tw + V]),
        "write dx": _sectors(t, [n, c, h0, w0], [n + 1, c + 1, h0 + th, w0 + tw]),
    }
    ws_entry = NUM_SLOTS * case.acc_size  # one per (n, strip, tile column, c), 32-byte aligned
    traffic["write ws"] = p.grid.items * _cdiv(ws_entry, 32) * 32
    warps = p.threads // 32
    units = {
        "tiles": p.grid.tiles_h / p.grid.strips,
        "x copy pairs": warp_units(_passes(th + 4, p.rp, p.rwv, p.threads) // 2),
        "dy copy pairs": warp_units(_passes(th + 2, p.rp, p.rwv, p.threads) // 2),
        "halo zero": warp_units(strided_counts(2 * (th + 2), np.arange(p.threads), p.threads)),
        # block_reduce_plane: the 16 threads of warp 0 add the other warps' sums
        "warp sums": warp_units(np.where(np.arange(p.threads) < NUM_SLOTS, warps - 1, 0)),
    }
    ws = N * p.grid.partials * C * ws_entry
    return Work(p.threads, p.grid.items, units, traffic, p.smem_bytes, ws, _nchw_detail(p))


def _nhwc_tiles(case: Case, cb: int, tiles_h: int, tiles_w: int):
    N, C, _, _ = case.shape
    n, b, th, tw = _grid(N, _cdiv(C, cb), tiles_h, tiles_w)
    return n, b * cb, th * NHWC_TH, tw * NHWC_TW


def _nhwc_box(t, n, c0, cb, h0, w0, r, th=NHWC_TH, tw=NHWC_TW) -> int:
    return _sectors(t, [n, c0, h0 - r, w0 - r], [n + 1, c0 + cb, h0 + th + r, w0 + tw + r])


def forward_nhwc(case: Case) -> Work:
    N, C, H, W = case.shape
    cb = nhwc_forward_cb(case.itemsize)
    p = nhwc_plan(False, cb, case.itemsize, case.acc_size, N, C, H, W)
    t = case.tensor()
    n, c0, h0, w0 = _nhwc_tiles(case, cb, p.grid.tiles_h, p.grid.tiles_w)
    traffic = {
        "read x": _nhwc_box(t, n, c0, cb, h0, w0, 1),
        "write y": _nhwc_box(t, n, c0, cb, h0, w0, 0),
    }
    vpp = cb * case.itemsize // 16
    rwv = (NHWC_TW + 2) * vpp
    units = {"copy pairs": warp_units(_passes(NHWC_TH + 2, THREADS // rwv, rwv, THREADS) // 2)}
    detail = {"tile": "16 x 16 pixels", "channels": cb, "dynamic_smem": p.smem_bytes}
    return Work(THREADS, p.grid.items, units, traffic, p.smem_bytes, detail=detail)


def backward_nhwc(case: Case) -> Work:
    N, C, H, W = case.shape
    cb = nhwc_backward_cb(case.itemsize)
    p = nhwc_plan(True, cb, case.itemsize, case.acc_size, N, C, H, W)
    t = case.tensor()
    n, c0, h0, w0 = _nhwc_tiles(case, cb, p.grid.tiles_h, p.grid.tiles_w)
    traffic = {
        "read x": _nhwc_box(t, n, c0, cb, h0, w0, 2),
        "read dy": _nhwc_box(t, n, c0, cb, h0, w0, 1),
        "write dx": _nhwc_box(t, n, c0, cb, h0, w0, 0),
    }
    # ws: per block CB channels x 16 slots, contiguous
    blocks = p.grid.items
    traffic["write ws"] = blocks * _cdiv(cb * NUM_SLOTS * case.acc_size, 32) * 32
    vpp = cb * case.itemsize // 16
    lanes = cb // nhwc_backward_pair(case.itemsize)
    groups = THREADS // lanes
    grp = np.arange(THREADS) // lanes
    xw, dw = (NHWC_TW + 4) * vpp, (NHWC_TW + 2) * vpp
    units = {
        "tiles": p.grid.tiles_h / p.grid.strips,
        "x copy pairs": warp_units(_passes(NHWC_TH + 4, THREADS // xw, xw, THREADS) // 2),
        "dy copy pairs": warp_units(_passes(NHWC_TH + 2, THREADS // dw, dw, THREADS) // 2),
        "ring rows": warp_units(strided_counts(2, grp, groups)),
        "ring columns": warp_units(strided_counts(2, (grp + groups // 2) % groups, groups)),
    }
    ws = N * p.grid.partials * C * NUM_SLOTS * case.acc_size
    detail = {
        "tile": "16 x 16 pixels",
        "channels": cb,
        "strip_len": p.grid.strip_len,
        "dynamic_smem": p.smem_bytes,
    }
    return Work(THREADS, p.grid.items, units, traffic, p.smem_bytes, ws, detail)


def finalize(case: Case) -> Work:
    """finalize_kernel: thread (c, slot) sums its slot over each n's partials, then over n."""
    N, C, H, W = case.shape
    nhwc = case.layout == "channels_last"
    if nhwc:
        cb = nhwc_backward_cb(case.itemsize)
        partials = nhwc_plan(True, cb, case.itemsize, case.acc_size, N, C, H, W).grid.partials
    else:
        partials = nchw_plan(True, case.itemsize, case.acc_size, N, C, H, W).grid.partials
    per_n = partials  # the inner loops run `partials` trips per n
    units = {"n": float(N), "partials": float(per_n)}
    ws = N * partials * C * NUM_SLOTS * case.acc_size
    param = 4 if case.acc_size == 4 else 8  # the report's parameters: fp32 (fp64 for fp64 x)
    traffic = {
        "read ws": _cdiv(ws, 32) * 32,
        "read g": _cdiv(N * C * case.itemsize, 32) * 32,
        "read gate": _cdiv(2 * C * param, 32) * 32,
        "write grads": _cdiv(17 * C * param, 32) * 32 + _cdiv(N * C * case.itemsize, 32) * 32,
    }
    return Work(THREADS, _cdiv(C, THREADS // NUM_SLOTS), units, traffic, 0)


@dataclass(frozen=True)
class KernelPlan:
    """A kernel's loops in SASS order, each named by the key of its units in Work.units."""

    named_loops: tuple[tuple[str, LoopSpec], ...]
    launch: Callable[[Case], Work]

    @property
    def loops(self) -> tuple[LoopSpec, ...]:
        return tuple(spec for _, spec in self.named_loops)

    def work(self, case: Case) -> KernelWork:
        w = self.launch(case)
        reads = sum(v for k, v in w.traffic.items() if k.startswith("read"))
        writes = sum(v for k, v in w.traffic.items() if k.startswith("write"))
        return KernelWork(
            threads=w.threads,
            blocks=w.blocks,
            units=[w.units[key] for key, _ in self.named_loops],
            read_bytes=reads,
            write_bytes=writes,
            workspace_bytes=w.ws,
            dynamic_smem_bytes=w.smem,
            detail={**w.detail, **w.traffic},
        )


# Loops in SASS order. The copy loops are unrolled by 2 with an odd copy peeled into the code
# around them (counted there, once per entry): their units are whole pairs of copies. The
# element-wise (strided) kernels have the same loops, with V element copies per copy.
_COPY = LoopSpec("region rows into shared memory, two copies per trip")
_TILES = LoopSpec("tile rows of the block's strip")
_FWD = (("copy pairs", _COPY),)
_BWD_NCHW = (
    ("tiles", _TILES),
    ("x copy pairs", _COPY),
    ("dy copy pairs", _COPY),
    ("warp sums", LoopSpec("block_reduce_plane: warp 0 adds the other warps' slot sums")),
)
_BWD_NHWC = (
    ("tiles", _TILES),
    ("x copy pairs", _COPY),
    ("dy copy pairs", _COPY),
    ("ring rows", LoopSpec("dl of the rows above and below the tile (two groups)")),
    ("ring columns", LoopSpec("dl of the columns left and right of the tile (two groups)")),
)
KERNELS: dict[str, KernelPlan] = {
    "forward_nchw_kernel": KernelPlan(_FWD, forward_nchw),
    "forward_nchw_strided_kernel": KernelPlan(_FWD, forward_nchw),
    "forward_nhwc_kernel": KernelPlan(_FWD, forward_nhwc),
    "forward_nhwc_strided_kernel": KernelPlan(_FWD, forward_nhwc),
    "backward_nchw_kernel": KernelPlan(
        (("halo zero", LoopSpec("zeroing the dl columns beside a whole-row tile")),) + _BWD_NCHW,
        backward_nchw,
    ),
    "backward_nchw_wide_kernel": KernelPlan(_BWD_NCHW, backward_nchw),
    "backward_nchw_strided_kernel": KernelPlan(_BWD_NCHW, backward_nchw),
    "backward_nhwc_kernel": KernelPlan(_BWD_NHWC, backward_nhwc),
    "backward_nhwc_strided_kernel": KernelPlan(_BWD_NHWC, backward_nhwc),
    "finalize_kernel": KernelPlan(
        (("n", LoopSpec("the images")), ("partials", LoopSpec("the partials of one image"))),
        finalize,
    ),
}


@dataclass(frozen=True)
class OpPlan:
    kernels: tuple[str, ...]
    host: tuple[HostOp, ...] = ()


def op_plan(case: Case, direction: str) -> OpPlan:
    """The kernels the wrappers launch for contiguous inputs of this case."""
    N, C, H, W = case.shape
    if case.layout == "channels_last":
        main = "forward_nhwc_kernel" if direction == "forward" else "backward_nhwc_kernel"
    elif direction == "forward":
        main = "forward_nchw_kernel"
    else:
        p = nchw_plan(True, case.itemsize, case.acc_size, N, C, H, W)
        main = "backward_nchw_wide_kernel" if p.chunked else "backward_nchw_kernel"
    if direction == "forward":
        return OpPlan((main,))
    return OpPlan((main, "finalize_kernel"))
