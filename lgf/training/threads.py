"""The torch CPU thread count of a stretch of work (evaluation has its own, `eval_threads`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Runs the block with `threads` torch CPU threads (0: leave the count as it is) and restores
    the previous count afterwards, also when the block raises."""
    if threads <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
