"""DataLoaders for training and evaluation over lgf.data.CocoDetection."""

from __future__ import annotations

import torch

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
) -> torch.utils.data.DataLoader:
    """Training: shuffled per epoch, padded so every rank gets as many batches. Evaluation: in
    order, each rank a disjoint share (no padding, so no image is counted twice)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    sampler = EpochSampler(
        len(dataset), shuffle=train, seed=seed, rank=rank, world_size=world_size, pad=train
    )
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_detection,
        drop_last=False,
        pin_memory=False,
        persistent_workers=False,
    )
