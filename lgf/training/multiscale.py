"""Multi-scale training (`data_augmentation="multiscale"`): one random input size per batch.

As ASFF trains, every image of a batch is resized to the same randomly drawn size (so a batch
pads no more than at one size), where torchvision's "multiscale" policy draws a size per image.
The sizes span 0.6-1.0 of `img_size`, torchvision's range (480-800 for 800): every multiple of 32
in [0.6 * img_size, img_size) and img_size itself. The draw depends on (seed, epoch, batch index)
only, so a resumed run and every process of a multi-process run use the same sizes. Evaluation
keeps `img_size`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn as nn

from ..utils.unwrap import unwrap

__all__ = ["MultiScale", "multiscale_sizes", "input_size"]


def multiscale_sizes(img_size: int) -> list[int]:
    """The sizes a batch is drawn from."""
    low = 0.6 * img_size
    return sorted({s for s in range(32, img_size, 32) if s >= low} | {int(img_size)})


class MultiScale:
    """The input size of each training batch."""

    def __init__(self, img_size: int, seed: int = 0):
        self.sizes = multiscale_sizes(img_size)
        self.seed = int(seed)

    def size(self, epoch: int, batch: int) -> int:
        """The size of micro-batch `batch` (counted from the epoch's start) of `epoch`."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 100_003 + batch)
        return self.sizes[int(torch.randint(len(self.sizes), (1,), generator=g))]


@contextlib.contextmanager
def input_size(model: nn.Module, size: int) -> Iterator[None]:
    """Within the block, the detector resizes its inputs to `size` (longer side, as img_size)."""
    transform = unwrap(model).transform
    saved = transform.min_size, transform.max_size
    transform.min_size, transform.max_size = (int(size),), int(size)
    try:
        yield
    finally:
        transform.min_size, transform.max_size = saved
