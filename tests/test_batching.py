"""Aspect-ratio grouping of training batches (lgf.data.batching) against torchvision's
semantics, determinism, sharding, resume, and the padding it saves on real images."""

import bisect
import math
import os
from collections import defaultdict

import numpy as np
import pytest
import torch

from lgf.data import (
    CocoDetection,
    EpochBatchSampler,
    EpochSampler,
    aspect_ratio_groups,
    build_transforms,
    image_aspect_ratios,
    make_loader,
)


def _torchvision_groups(ratios, k):
    """torchvision's create_aspect_ratio_groups, restated: bins 2**linspace(-1, 1, 2k+1) (k > 0)
    or [1.0], group = bisect_right(bins, ratio)."""
    bins = (2 ** np.linspace(-1, 1, 2 * k + 1)).tolist() if k > 0 else [1.0]
    return [bisect.bisect_right(bins, r) for r in ratios]


def _torchvision_batches(order, group_ids, batch_size):
    """torchvision's GroupedBatchSampler over a fixed order, restated."""
    buffers, members, out = defaultdict(list), defaultdict(list), []
    for idx in order:
        g = group_ids[idx]
        buffers[g].append(idx)
        members[g].append(idx)
        if len(buffers[g]) == batch_size:
            out.append(buffers.pop(g))
    wanted = len(order) // batch_size
    for g, _ in sorted(buffers.items(), key=lambda kv: len(kv[1]), reverse=True):
        if len(out) == wanted:
            break
        need = batch_size - len(buffers[g])
        pool = members[g] * math.ceil(need / len(members[g]))
        out.append(buffers[g] + pool[:need])
    return out


@pytest.mark.parametrize("k", [0, 1, 3, 5])
def test_groups_match_torchvision_bins(k):
    rng = np.random.default_rng(k)
    ratios = list(2 ** rng.uniform(-1.5, 1.5, 300)) + [0.5, 1.0, 2.0, 2 ** (1 / 3)]
    assert aspect_ratio_groups(ratios, k) == _torchvision_groups(ratios, k)
    with pytest.raises(ValueError, match=">= 0"):
        aspect_ratio_groups(ratios, -1)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4])
def test_grouped_batches_follow_torchvision(batch_size):
    n = 37
    groups = [int(g) for g in np.random.default_rng(1).integers(0, 4, n)]
    sampler = EpochSampler(n, seed=5)
    batches = EpochBatchSampler(sampler, batch_size, groups)
    for epoch in range(3):
        batches.set_epoch(epoch)
        order = [i for i, _ in sampler.share()]
        got = [[i for i, _ in b] for b in batches]
        assert got == _torchvision_batches(order, groups, batch_size)
        assert len(got) == len(batches) == n // batch_size
        assert all(len({groups[i] for i in b}) == 1 and len(b) == batch_size for b in got)
    if batch_size == 1:  # one image per batch: the plain order
        assert got == [[i] for i in order]


def test_batches_are_deterministic_resumable_and_sharded():
    n, size, groups = 50, 4, [i % 3 for i in range(50)]
    a = EpochBatchSampler(EpochSampler(n, seed=3), size, groups)
    b = EpochBatchSampler(EpochSampler(n, seed=3), size, groups)
    a.set_epoch(2)
    b.set_epoch(2)
    full = list(a)
    assert full == list(b)  # the same seed and epoch, the same batches (and per-sample seeds)
    a.set_epoch(3)
    assert list(a) != full
    b.set_start(5)  # a resumed run skips the batches done
    assert list(b) == full[5:] and len(b) == len(full) - 5
    shards = [EpochBatchSampler(EpochSampler(n, seed=3, rank=r, world_size=3), size, groups)
              for r in range(3)]  # fmt: skip
    counts = {len(s) for s in shards}
    assert counts == {math.ceil(n / 3) // size}  # every rank steps as often
    for s in shards:  # each rank batches its own share only
        assert {i for batch in s for i, _ in batch} <= {i for i, _ in s.sampler.share()}
    shares = [[i for i, _ in s.sampler.share()] for s in shards]
    assert sorted(sum(shares, [])) == sorted(list(range(n)) + [shares[0][0]])  # 1 padded repeat


def test_plain_batches_keep_the_previous_loader_order():
    sampler = EpochSampler(11, seed=0)
    plain = list(EpochBatchSampler(sampler, 4))
    pairs = sampler.share()
    assert plain == [pairs[0:4], pairs[4:8], pairs[8:11]]
    with pytest.raises(ValueError, match="larger than the 3 training images"):
        EpochBatchSampler(EpochSampler(3), 4, [0, 0, 0])


def test_grouping_cuts_padding_on_aerial_images(aerial_cars_kit):
    """The training images come in two shapes (684x547 and 1764x430): grouped batches hold one
    shape, so a batch pads only to the stride; ungrouped ones pad to the larger of both."""
    d = aerial_cars_kit
    ds = CocoDetection(os.path.join(d, "images"), os.path.join(d, "train.json"))
    ratios = image_aspect_ratios(ds)
    sizes = {(im["width"], im["height"]) for im in ds.coco.imgs.values()}
    assert len(sizes) == 2 and len(ratios) == len(ds)

    def padded_over_real(group_ids):
        loader = EpochBatchSampler(EpochSampler(len(ds), seed=0), 2, group_ids)
        padded = real = 0
        for batch in loader:
            dims = [ds.coco.imgs[ds.ids[i]] for i, _ in batch]
            h, w = max(x["height"] for x in dims), max(x["width"] for x in dims)
            padded += h * w * len(batch)
            real += sum(x["height"] * x["width"] for x in dims)
        return padded / real

    grouped = padded_over_real(aspect_ratio_groups(ratios, 3))
    plain = padded_over_real(None)
    assert grouped == 1.0 and plain > 1.1


def test_make_loader_trains_on_grouped_batches(tmp_path):
    from lgf.data import generate_synthetic_coco

    paths = generate_synthetic_coco(str(tmp_path / "syn"), num_train=9, num_val=1, image_size=64)
    ds = CocoDetection(paths["train_img"], paths["train_ann"], build_transforms(True))
    groups = aspect_ratio_groups(image_aspect_ratios(ds), 3)
    assert len(set(groups)) == 2  # the synthetic set has square and 4:3 images
    loader = make_loader(ds, 2, train=True, group_ids=groups)
    shapes = [{tuple(im.shape) for im in images} for images, _ in loader]
    assert len(shapes) == 4 and all(len(s) == 1 for s in shapes)
    with pytest.raises(ValueError, match="training loaders only"):
        make_loader(ds, 2, train=False, group_ids=groups)
    assert torch.is_tensor(next(iter(loader))[0][0])
