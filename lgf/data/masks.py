"""Instance masks from COCO segmentations (polygons or RLE), for Mask R-CNN.

`CocoInstanceMasks` is the COCO dataset with a "masks" target (one mask per kept box). Masks are
used only where the annotations have them: it refuses an annotation file in which a box it would
keep has no polygon or RLE, naming the file and the annotation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from torchvision import tv_tensors

from .coco import CocoDetection, DatasetError

__all__ = ["CocoInstanceMasks", "annotation_mask", "check_segmentations", "has_segmentation"]


def has_segmentation(ann: dict[str, Any]) -> bool:
    """Whether an annotation holds a polygon list or an RLE dict."""
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        return "counts" in seg and "size" in seg
    return isinstance(seg, list) and any(isinstance(p, list) and len(p) >= 6 for p in seg)


def check_segmentations(coco: COCO, ann_file: str, image_ids: Sequence[int]) -> None:
    """Raises DatasetError when a non-crowd annotation of these images lacks a segmentation."""
    anns = [a for i in image_ids for a in coco.imgToAnns.get(i, []) if not a.get("iscrowd", 0)]
    lacking = [a for a in anns if not has_segmentation(a)]
    if lacking:
        raise DatasetError(
            f"{ann_file!r}: {len(lacking)} of {len(anns)} annotations have no 'segmentation' "
            f"(polygons or RLE), e.g. annotation {lacking[0].get('id')!r}; Mask R-CNN needs "
            "instance masks: use a box detector or annotations with segmentations"
        )


def annotation_mask(ann: dict[str, Any], height: int, width: int) -> torch.Tensor:
    """The (height, width) uint8 mask of one annotation's polygons or RLE."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(seg, height, width))
    elif isinstance(seg["counts"], list):
        rle = coco_mask.frPyObjects(seg, height, width)
    else:
        rle = seg
    return torch.from_numpy(coco_mask.decode(rle)).to(torch.uint8)


class CocoInstanceMasks(CocoDetection):
    """lgf.data.CocoDetection whose targets also hold "masks" (tv_tensors.Mask, (N, H, W) uint8,
    in the order of the boxes). Raises DatasetError at construction when an annotation of the
    kept images has no segmentation."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        check_segmentations(self.coco, self.ann_file, self.ids)

    def extra_targets(self, index: int, width: int, height: int) -> dict:
        kept = self.kept_annotations(index, width, height)
        masks = [annotation_mask(a, height, width) for a, _ in kept]
        empty = torch.zeros((0, height, width), dtype=torch.uint8)
        return {"masks": tv_tensors.Mask(torch.stack(masks) if masks else empty)}
