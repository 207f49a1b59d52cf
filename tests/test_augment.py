"""Training augmentations (lgf.data.transforms): every policy keeps boxes on their objects, drops
and counts degenerate boxes, and multi-scale training resizes whole batches."""

import pytest
import torch
from torchvision import tv_tensors
from torchvision.ops import masks_to_boxes

from lgf.data.transforms import AUGMENTATIONS, build_transforms
from lgf.training.multiscale import MultiScale, input_size, multiscale_sizes

H, W = 96, 128
RECTS = [(10, 12, 40, 30), (70, 50, 110, 90), (5, 60, 25, 88)]  # x1, y1, x2, y2


def _sample():
    """An image with three bright rectangles, their boxes, and one mask per rectangle (masks
    move with every geometric transform, so they tell where each object ended up)."""
    image = torch.zeros(3, H, W, dtype=torch.uint8)
    masks = torch.zeros(len(RECTS), H, W, dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(RECTS):
        image[:, y1:y2, x1:x2] = 255
        masks[i, y1:y2, x1:x2] = 1
    target = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor(RECTS, dtype=torch.float32), format="XYXY", canvas_size=(H, W)
        ),
        "labels": torch.arange(1, len(RECTS) + 1),
        "masks": tv_tensors.Mask(masks),
    }
    return tv_tensors.Image(image), target


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_boxes_stay_on_their_objects(augmentation):
    t = build_transforms(True, 0.5, augmentation, img_size=80)
    dropped_some = False
    for seed in range(25):
        torch.manual_seed(seed)
        image, target = _sample()
        image, target = t(image, target)
        assert image.dtype == torch.float32
        assert -1e-5 <= float(image.min()) <= float(image.max()) <= 1 + 1e-5  # resizing rounds
        boxes, masks = target["boxes"], target["masks"]
        assert len(boxes) == len(masks) == len(target["labels"])
        assert target["dropped_boxes"] == len(RECTS) - len(boxes)
        dropped_some |= target["dropped_boxes"] > 0
        if augmentation == "lsj":
            assert tuple(image.shape[-2:]) == (80, 80)
        keep = masks.flatten(1).any(1)
        assert keep.all()  # a kept box has its object in the image
        torch.testing.assert_close(
            boxes.as_subclass(torch.Tensor), masks_to_boxes(masks) + torch.tensor([0, 0, 1, 1]),
            atol=2.0, rtol=0,
        )  # fmt: skip
    if augmentation in ("ssdlite", "ssd", "lsj"):
        assert dropped_some, "crops never removed a box in 25 draws"


def test_eval_transform_and_bad_settings():
    image, target = _sample()
    out, t2 = build_transforms(False)(image, target)
    assert out.dtype == torch.float32 and "dropped_boxes" not in t2
    with pytest.raises(ValueError, match="augmentation must be one of"):
        build_transforms(True, 0.5, "mosaic")
    with pytest.raises(ValueError, match="needs the image size"):
        build_transforms(True, 0.5, "lsj")


def test_multiscale_sizes_and_draws():
    assert multiscale_sizes(640) == [384, 416, 448, 480, 512, 544, 576, 608, 640]
    assert multiscale_sizes(100) == [64, 96, 100]
    ms = MultiScale(640, seed=1)
    draws = [ms.size(0, b) for b in range(40)]
    assert set(draws) <= set(ms.sizes) and len(set(draws)) > 3
    assert draws == [MultiScale(640, seed=1).size(0, b) for b in range(40)]  # reproducible
    assert draws != [ms.size(1, b) for b in range(40)]


def test_input_size_resizes_a_whole_batch_and_restores():
    from lgf.models import build_retinanet

    model = build_retinanet("resnet18", num_classes=3, min_size=64, max_size=64)
    images = [torch.rand(3, 60, 90), torch.rand(3, 80, 40)]
    with input_size(model, 96):
        batch, _ = model.transform(images)
        assert max(batch.image_sizes[0]) == 96 and max(batch.image_sizes[1]) == 96
    assert model.transform.min_size == (64,) and model.transform.max_size == 64
