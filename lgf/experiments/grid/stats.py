"""Mean and sample standard deviation over seeds, the one statistic of the grid's tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["mean_std"]


def _valid(v):
    # pycocotools reports -1 for an area range without ground truth
    return isinstance(v, (int, float)) and math.isfinite(v) and v >= 0


def mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof=1) of a list of numbers; std is None for one value; (None, None)
    for an empty list or when any value is missing / -1 (metric undefined for this split)."""
    if not values or not all(_valid(v) for v in values):
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
