"""DataLoaders for training and evaluation over lgf.data.CocoDetection."""

import torch

from .coco import collate_detection
from .sampler import EpochSampler


def make_loader(dataset, batch_size, train, seed=0, rank=0, world_size=1, workers=0):
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
