"""Sector-exact memory traffic: the 32-byte sectors that each tile or program touches.

A kernel's traffic is the sum, over its tiles (CUDA blocks' work items, Triton programs), of
the distinct 32-byte sectors each one reads or writes, halo included: as if every tile fetched
its own sectors from DRAM. Sectors shared by neighbouring tiles (the halo) are counted once per
tile that touches them, so this is the traffic with no reuse through L2 (an upper bound; the
L2 usually serves part of the halo).

Tensors are described by ``TensorMeta`` (element strides, element size, byte offset of element
0 modulo 32): only the alignment of addresses matters for sector counts, never their values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECTOR = 32


@dataclass(frozen=True)
class TensorMeta:
    """What sector counting needs of a 4-D tensor (N, C, H, W)."""

    shape: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]  # in elements
    itemsize: int
    base_mod: int = 0  # byte address of element (0, 0, 0, 0) modulo SECTOR

    @classmethod
    def of(cls, t) -> "TensorMeta":
        """From a torch tensor (meta tensors included: their data_ptr is 0, i.e. aligned)."""
        return cls(tuple(t.shape), tuple(t.stride()), t.element_size(), t.data_ptr() % SECTOR)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.itemsize


def distinct_sectors(addresses: np.ndarray) -> int:
    """Number of 32-byte sectors that the element byte addresses (any shape) fall into, where
    an element of itemsize > 1 is covered by its first byte (elements never straddle sectors
    for the aligned dtypes used here)."""
    if addresses.size == 0:
        return 0
    return int(np.unique(addresses.ravel() // SECTOR).size)


class BoxCounter:
    """Distinct sectors of 4-D index boxes [lo, hi) of one tensor, memoised on what decides the
    count: the box extents and the box's first byte address modulo the sector size."""

    def __init__(self, t: TensorMeta):
        self.t = t
        self._memo: dict[tuple, int] = {}
        self._st = np.array(t.strides, dtype=np.int64) * t.itemsize

    def _count(self, start_mod: int, ext: tuple[int, ...]) -> int:
        key = (start_mod, ext)
        if key not in self._memo:
            grids = np.ix_(*[np.arange(e, dtype=np.int64) * s for e, s in zip(ext, self._st)])
            addr = start_mod + sum(grids)
            self._memo[key] = distinct_sectors(np.asarray(addr))
        return self._memo[key]

    def total(self, lo: np.ndarray, hi: np.ndarray) -> int:
        """Sum over boxes (rows of lo/hi, shape (k, 4), already clipped to the tensor) of the
        sectors each box touches. Empty boxes count 0."""
        lo = np.asarray(lo, dtype=np.int64)
        hi = np.asarray(hi, dtype=np.int64)
        ext = np.maximum(hi - lo, 0)
        keep = np.all(ext > 0, axis=1)
        lo, ext = lo[keep], ext[keep]
        if lo.shape[0] == 0:
            return 0
        start = (self.t.base_mod + lo @ self._st) % SECTOR
        keys = np.concatenate([start[:, None], ext], axis=1)
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        return int(
            sum(
                c * self._count(int(k[0]), tuple(int(v) for v in k[1:]))
                for k, c in zip(uniq, counts)
            )
        )


def clip_boxes(t: TensorMeta, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    shape = np.array(t.shape, dtype=np.int64)
    return np.clip(lo, 0, shape), np.clip(hi, 0, shape)


def pixel_window_sectors(
    t: TensorMeta, n_c_groups: list[tuple[int, int, int]], p0s: np.ndarray, bp: int, radius: int
) -> int:
    """Sectors touched by programs that each cover channels [c0, c1) of image n and the flat
    pixels [p0, p0 + bp) of the H*W plane (clipped), reading the (2r+1)^2 window of shifted
    pixels (h + dh, w + dw) inside the image (radius 0: the pixels themselves).

    n_c_groups: (n, c0, c1) of the program groups; p0s: the first pixel of each program of a
    group (the same for every group). Groups whose first byte has the same alignment give the
    same counts, so each alignment class is counted once.
    """
    _, _, H, W = t.shape
    sn, sc, sh, sw = (s * t.itemsize for s in t.strides)
    offs = np.arange(-radius, radius + 1)
    classes: dict[tuple[int, int], int] = {}
    for n, c0, c1 in n_c_groups:
        key = ((t.base_mod + n * sn + c0 * sc) % SECTOR, c1 - c0)
        classes[key] = classes.get(key, 0) + 1
    total = 0
    for (start_mod, nc), groups in classes.items():
        chan = np.arange(nc, dtype=np.int64) * sc
        per_group = 0
        for p0 in p0s:
            p = np.arange(p0, min(p0 + bp, H * W), dtype=np.int64)
            h = (p // W)[:, None, None] + offs[None, :, None]
            w = (p % W)[:, None, None] + offs[None, None, :]
            h, w = np.broadcast_arrays(h, w)
            ok = (h >= 0) & (h < H) & (w >= 0) & (w < W)
            pix = (h[ok] * sh + w[ok] * sw).astype(np.int64)
            addr = start_mod + pix[:, None] + chan[None, :]
            per_group += distinct_sectors(addr)
        total += groups * per_group
    return total
