"""DataLoaders for training and evaluation over lgf.data.CocoDetection."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .batching import EpochBatchSampler
from .coco import collate_detection
from .sampler import EpochSampler


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    group_ids: Sequence[int] | None = None,
) -> torch.utils.data.DataLoader:
    """Training: shuffled per epoch, padded so every rank gets as many batches, batched by an
    `EpochBatchSampler` (within aspect-ratio groups when `group_ids` is given; its `set_epoch` /
    `set_start` drive the epoch). Evaluation: in order, each rank a disjoint share (no padding, so
    no image is counted twice)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    sampler = EpochSampler(
        len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train
    )
    batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": False}
    if train:
        batching = {"batch_sampler": EpochBatchSampler(sampler, batch_size, group_ids)}
    elif group_ids is not None:
        raise ValueError("aspect-ratio groups apply to training loaders only")
    return torch.utils.data.DataLoader(
        dataset,
        num_workers=workers,
        collate_fn=collate_detection,
        pin_memory=False,
        persistent_workers=False,
        **batching,
    )
