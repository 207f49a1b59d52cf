"""Tile, grid and warp choices of the Triton kernels, from shapes and strides only (no Triton).

One fixed configuration per shape, no autotuning. Every choice here is a plain function so that
tests can check it without launching anything.

- Lanes run along x's unit-stride dimension: columns (NCHW-like) or channels (channels_last).
- A warp's loads should cover whole 32-byte sectors: at least 32 bytes of consecutive elements.
- Programs own strips of rows; a strip costs two halo rows, so strips are only split when there
  are too few programs to fill a GPU (MIN_PROGRAMS).
- The backward's workspace (16 partial sums per program and channel, in the accumulation
  dtype) stays at most 1/16 of x's bytes whenever the image has enough pixels for that.
- Offsets from a program's base pointer are int32 unless its strip reaches 2^31 elements
  (`needs_int64`).
"""

from dataclasses import dataclass

MIN_PROGRAMS = 2048  # about 16 warps on each SM of a 132-SM GPU
MIN_STRIP_ROWS = 8
SECTOR_BYTES = 32
WORKSPACE_FRACTION = 16  # workspace bytes <= x bytes / WORKSPACE_FRACTION
NHWC_BACKWARD_COLUMNS = 4  # TW: columns per group of the channels_last backward
FORWARD_TILE = 256  # channels_last forward: elements per program (8 warps, one per column)
INT32_LIMIT = 2**31


@dataclass(frozen=True)
class Tiling:
    """One launch: tile sizes, the program grid (n, channel blocks, strips, column blocks)."""

    block_c: int  # channels per program
    block_w: int  # columns per program (lanes, or columns per group in the NHWC backward)
    groups: int  # column groups per program (NHWC backward), else 1
    rows: int  # rows per strip
    n_cblocks: int
    n_strips: int
    n_wblocks: int
    num_warps: int
    index64: bool

    def programs(self, n: int) -> int:
        return n * self.n_cblocks * self.n_strips * self.n_wblocks


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(v: int) -> int:
    return 1 << max(0, v - 1).bit_length()


def check_pow2(v: int | None, name: str) -> int | None:
    if v is not None and (v < 1 or v & (v - 1)):
        raise ValueError(f"lgf triton launcher: {name} must be a power of two >= 1, got {v}")
    return v


def lanes_along_channels(shape: tuple, strides: tuple) -> bool:
    """True when x's channels are its unit-stride dimension (channels_last and similar)."""
    return shape[1] > 1 and strides[1] == 1


def needs_int64(strides: list[tuple], extents: tuple) -> bool:
    """The launcher's guard: int64 offsets from a program's base pointer when, for one of the
    tensors (its (n, c, h, w) strides), sum(|stride| * extent) reaches 2^31. extents (c, h, w):
    the farthest a program's tile, strip and halo reach from its base along channels, rows
    and columns."""
    return any(sum(abs(s) * e for s, e in zip(st[1:], extents)) >= INT32_LIMIT for st in strides)


def _lanes(extent: int, widths: list[int], halo: int = 0) -> int:
    """The width w in widths (ascending) that wastes the fewest lanes covering `extent` with
    tiles of w - halo outputs; the widest of equals."""
    return min(reversed(widths), key=lambda w: cdiv(extent, w - halo) * w)


def _widths(lo: int, hi: int) -> list[int]:
    out, w = [], lo
    while w <= hi:
        out.append(w)
        w *= 2
    return out


def _strips(H: int, base_programs: int, max_strips: int, rows: int | None) -> tuple[int, int]:
    """(rows per strip, strips): whole columns of rows unless programs are too few."""
    if rows is None:
        want = cdiv(MIN_PROGRAMS, max(1, base_programs))
        strips = max(1, min(want, H // MIN_STRIP_ROWS, max_strips))
        rows = cdiv(H, strips)
    return rows, cdiv(H, rows)


def forward_tiling(
    x_shape: tuple,
    x_strides: tuple,
    y_strides: tuple,
    elem_bytes: int,
    block_c: int | None = None,
    block_w: int | None = None,
    rows: int | None = None,
) -> Tiling:
    N, C, H, W = x_shape
    check_pow2(block_c, "block_c")
    check_pow2(block_w, "block_w")
    sector = max(1, SECTOR_BYTES // elem_bytes)
    if lanes_along_channels(x_shape, x_strides):  # a warp per column: fewer halo columns
        bc = block_c or _lanes(C, _widths(min(sector, next_pow2(C)), 32))
        bw = block_w or max(1, min(next_pow2(W), FORWARD_TILE // bc))
    else:
        bw = block_w or _lanes(W, _widths(min(sector, next_pow2(W)), 32))
        bc = block_c or max(1, 32 // bw)
    n_cb, n_wb = cdiv(C, bc), cdiv(W, bw)
    rows, n_strips = _strips(H, N * n_cb * n_wb, H, rows)
    index64 = needs_int64([x_strides, y_strides], (bc - 1, rows + 1, bw + 1))
    return Tiling(bc, bw, 1, rows, n_cb, n_strips, n_wb, max(1, min(8, bc * bw // 32)), index64)


def _max_blocks(H: int, W: int, x_bytes: int, acc_bytes: int) -> int:
    """Most workspace rows per image and channel within the 1/16 budget (at least 1)."""
    return max(1, (H * W * x_bytes) // (WORKSPACE_FRACTION * 16 * acc_bytes))


def backward_nchw_tiling(
    x_shape: tuple,
    strides: list[tuple],
    elem_bytes: int,
    acc_bytes: int,
    block_w: int | None = None,
    rows: int | None = None,
) -> Tiling:
    """One warp per program; BW lanes of columns of which BW - 2 are outputs. strides: the
    (n, c, h, w) strides of dy, x and dx."""
    N, C, H, W = x_shape
    bw = check_pow2(block_w, "block_w") or _lanes(W, [8, 16, 32], halo=2)
    if bw < 4:
        raise ValueError(f"lgf triton launcher: block_w must be >= 4 here, got {bw}")
    n_wb = cdiv(W, bw - 2)
    max_strips = max(1, _max_blocks(H, W, elem_bytes, acc_bytes) // n_wb)
    rows, n_strips = _strips(H, N * C * n_wb, max_strips, rows)
    index64 = needs_int64(strides, (0, rows + 2, bw))
    return Tiling(1, bw, 1, rows, C, n_strips, n_wb, 1, index64)


def backward_nhwc_tiling(
    x_shape: tuple,
    strides: list[tuple],
    elem_bytes: int,
    acc_bytes: int,
    block_c: int | None = None,
    block_w: int | None = None,
    groups: int | None = None,
    rows: int | None = None,
) -> Tiling:
    """Lanes along channels (one per thread); groups of TW columns, G groups per program.
    strides: the (n, c, h, w) strides of dy, x and dx."""
    N, C, H, W = x_shape
    bc = check_pow2(block_c, "block_c") or min(32, next_pow2(C))
    tw = block_w or NHWC_BACKWARD_COLUMNS
    n_cb = cdiv(C, bc)
    budget = _max_blocks(H, W, elem_bytes, acc_bytes)
    g = groups or 1
    while groups is None and cdiv(W, tw * g) > budget and tw * g < W:
        g *= 2
    n_wb = cdiv(W, tw * g)
    rows, n_strips = _strips(H, N * n_cb * n_wb, max(1, budget // n_wb), rows)
    index64 = needs_int64(strides, (bc - 1, rows + 2, tw + 2))
    return Tiling(bc, tw, g, rows, n_cb, n_strips, n_wb, max(1, bc // 32), index64)


def finish_tiling(C: int) -> tuple[int, int, int]:
    """(channels per program, workspace rows per chunk, num_warps) of the finishing kernel."""
    return min(64, next_pow2(C)), 16, 2
