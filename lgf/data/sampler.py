"""Deterministic, shardable, resumable sampling for training and evaluation.

Each epoch's order is a permutation seeded by (seed, epoch), the same whatever the number of
workers; every position also carries a per-sample seed for the random transforms. A resumed run
can start mid-epoch (`set_start`). With several processes each rank takes every world_size-th
sample; training pads the order so every rank gets as many batches (as DistributedSampler does).
"""

from __future__ import annotations

import math

import torch


class EpochSampler(torch.utils.data.Sampler):
    """Yields (index, sample_seed) pairs; the dataset (lgf.data.CocoDetection) accepts them."""

    def __init__(
        self,
        length: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ):
        if length <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.length = int(length)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.pad = pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skips the first `start` samples of this rank's share (mid-epoch resume)."""
        self.start = int(start)

    def share(self) -> list[tuple[int, int]]:
        """This rank's (index, sample_seed) pairs of the epoch, from its first one (ignores
        `set_start`)."""
        order, seeds = self._order()
        return list(zip(order, seeds))

    def _order(self):
        g = torch.Generator()
        g.manual_seed(self.seed * 1_000_003 + self.epoch)
        order = (
            torch.randperm(self.length, generator=g) if self.shuffle else torch.arange(self.length)
        )
        seeds = torch.randint(0, 2**62, (self.length,), generator=g)
        order, seeds = order.tolist(), seeds.tolist()
        if self.pad and self.world_size > 1:
            total = math.ceil(self.length / self.world_size) * self.world_size
            order = (order * math.ceil(total / self.length))[:total]
            seeds = (seeds * math.ceil(total / self.length))[:total]
        return order[self.rank :: self.world_size], seeds[self.rank :: self.world_size]

    def __iter__(self):
        return iter(self.share()[self.start :])

    def share_size(self) -> int:
        """How many samples this rank gets per epoch (ignores `set_start`)."""
        if self.pad and self.world_size > 1:
            return math.ceil(self.length / self.world_size)
        return len(range(self.rank, self.length, self.world_size))

    def __len__(self):
        return max(0, self.share_size() - self.start)
