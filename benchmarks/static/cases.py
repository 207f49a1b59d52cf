"""The cases the static report covers: shapes, dtypes, layouts, directions, GPUs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

SHAPES = {
    "A": (2, 512, 80, 80),  # the C3 map of a 640 px image
    "B": (16, 256, 160, 160),
}
DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
DEFAULT_DTYPES = ("float32", "bfloat16")
LAYOUTS = ("nchw", "channels_last")
DIRECTIONS = ("forward", "backward")


@dataclass(frozen=True)
class OpCase:
    shape_name: str
    shape: tuple[int, int, int, int]
    dtype: torch.dtype
    layout: str
    direction: str

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def key(self, backend: str) -> dict:
        return {
            "backend": backend,
            "direction": self.direction,
            "dtype": self.dtype_name,
            "layout": self.layout,
            "shape": self.shape_name,
        }


def iter_cases(shapes, dtypes, layouts, directions):
    """OpCases in a fixed order: shape, dtype, layout, direction."""
    for s, d, lay, dr in itertools.product(shapes, dtypes, layouts, directions):
        yield OpCase(s, SHAPES[s], DTYPES[d], lay, dr)
