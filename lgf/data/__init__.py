"""Data for the LGF trainer: COCO-style datasets, transforms, sampling, and a synthetic set."""

from .batching import EpochBatchSampler, aspect_ratio_groups, image_aspect_ratios
from .coco import CocoDetection, collate_detection, load_coco_annotations
from .decode import DatasetError, decode_image, read_image
from .loader import make_loader
from .sampler import EpochSampler
from .synthetic import generate_synthetic_coco
from .transforms import build_transforms

__all__ = [
    "CocoDetection",
    "DatasetError",
    "EpochBatchSampler",
    "EpochSampler",
    "aspect_ratio_groups",
    "build_transforms",
    "collate_detection",
    "decode_image",
    "generate_synthetic_coco",
    "image_aspect_ratios",
    "load_coco_annotations",
    "make_loader",
    "read_image",
]
