"""Training batches of an epoch, plain or grouped by aspect ratio (torchvision's semantics).

Grouping follows torchvision's `references/detection` (`--aspect-ratio-group-factor k`): each
image's aspect ratio (width / height) falls into one of the bins cut at 2**linspace(-1, 1, 2k+1)
(k = 0: portrait / landscape; k < 0: no grouping); a batch holds images of one bin only, so a
batch pads little. Batches are formed in the order of this rank's shuffled share of the epoch
(`EpochSampler.share`): a bin's batch is emitted as soon as it is full; at the end the fullest
unfinished bins are topped up with their own images until there are share // batch_size batches.
Everything derives from (seed, epoch, rank), so the batches are the same on every run and a
resumed run skips the batches already done (`set_start`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from PIL import Image

from .coco import CocoDetection
from .sampler import EpochSampler

__all__ = ["EpochBatchSampler", "aspect_ratio_bins", "aspect_ratio_groups", "image_aspect_ratios"]

Pair = tuple[int, int]  # (dataset index, per-sample seed)


def aspect_ratio_bins(factor: int) -> list[float]:
    """Bin edges of `--aspect-ratio-group-factor factor` (factor >= 0)."""
    if factor < 0:
        raise ValueError(f"aspect-ratio group factor must be >= 0 here, got {factor}")
    if factor == 0:
        return [1.0]
    n = 2 * factor + 1
    return [2.0 ** (-1.0 + 2.0 * i / (n - 1)) for i in range(n)]


def aspect_ratio_groups(aspect_ratios: Sequence[float], factor: int) -> list[int]:
    """The bin of each aspect ratio: the number of bin edges <= it (0 .. len(edges))."""
    edges = aspect_ratio_bins(factor)
    return [sum(1 for e in edges if e <= r) for r in aspect_ratios]


def image_aspect_ratios(dataset: CocoDetection) -> list[float]:
    """Width / height of every image of an lgf.data.CocoDetection, in dataset order: from the
    annotation file's width and height, else from the image file's header."""
    ratios = []
    for index, img_id in enumerate(dataset.ids):
        info = dataset.coco.imgs[img_id]
        w, h = info.get("width"), info.get("height")
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            path = dataset.image_path(index)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"image file not found: {path!r}")
            with Image.open(path) as im:  # reads the header only
                w, h = im.size
        ratios.append(float(w) / float(h))
    return ratios


def _grouped_batches(pairs: list[Pair], group_ids: Sequence[int], size: int) -> list[list[Pair]]:
    wanted = len(pairs) // size
    open_batches: dict[int, list[Pair]] = {}
    members: dict[int, list[Pair]] = {}
    batches = []
    for pair in pairs:
        g = group_ids[pair[0]]
        open_batches.setdefault(g, []).append(pair)
        members.setdefault(g, []).append(pair)
        if len(open_batches[g]) == size:
            batches.append(open_batches.pop(g))
    fullest_first = sorted(open_batches, key=lambda g: len(open_batches[g]), reverse=True)
    for g in fullest_first:
        if len(batches) >= wanted:
            break
        need = size - len(open_batches[g])
        pool = members[g] * math.ceil(need / len(members[g]))
        batches.append(open_batches[g] + pool[:need])
    return batches


class EpochBatchSampler(torch.utils.data.Sampler):
    """Batches of (index, sample_seed) pairs for a DataLoader's `batch_sampler`.

    group_ids: the aspect-ratio bin of every dataset index (`aspect_ratio_groups`), or None for
    plain batches: consecutive slices of the share, the last one possibly smaller.
    """

    def __init__(
        self, sampler: EpochSampler, batch_size: int, group_ids: Sequence[int] | None = None
    ):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        if group_ids is not None and len(group_ids) != sampler.length:
            raise ValueError(f"{len(group_ids)} group ids for a dataset of {sampler.length} images")
        share = sampler.share_size()
        if group_ids is not None and share < batch_size:
            raise ValueError(
                f"batch size {batch_size} is larger than the {share} training images per process: "
                "grouped batches would be empty; lower the batch size or disable aspect-ratio "
                "grouping (factor -1)"
            )
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.group_ids = None if group_ids is None else list(group_ids)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def set_start(self, batches: int) -> None:
        """Skips the first `batches` batches of this epoch (mid-epoch resume)."""
        self.start = int(batches)

    def epoch_batches(self) -> list[list[Pair]]:
        """Every batch of this rank's epoch, from the first."""
        pairs, size = self.sampler.share(), self.batch_size
        if self.group_ids is None:
            return [pairs[i : i + size] for i in range(0, len(pairs), size)]
        return _grouped_batches(pairs, self.group_ids, size)

    def __iter__(self) -> Iterator[list[Pair]]:
        return iter(self.epoch_batches()[self.start :])

    def __len__(self) -> int:
        share, size = self.sampler.share_size(), self.batch_size
        total = share // size if self.group_ids is not None else math.ceil(share / size)
        return max(0, total - self.start)
