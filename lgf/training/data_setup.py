"""The datasets and loaders of a training run (docs/design.md §5).

With no data paths at all the run trains on the deterministic synthetic set, generated once
under `synthetic_dir` (default OUTPUT_DIR/synthetic_data) by rank 0; `data_path` names a folder in
COCO's layout (lgf.data.layout). Training batches are grouped by aspect ratio unless
`aspect_ratio_group_factor` is -1 (lgf.data.batching); the detectors that need instance masks
read them from the annotations (lgf.data.masks). Errors name the settings (`train_img`, ...); the
command line shows them as its flags.
"""

from __future__ import annotations

import math
import os
import warnings

from torch.utils.data import DataLoader

from ..data import (
    CocoDetection,
    aspect_ratio_groups,
    build_transforms,
    generate_synthetic_coco,
    image_aspect_ratios,
    make_loader,
)
from ..data.layout import coco_layout_paths
from ..data.masks import CocoInstanceMasks
from ..detectors import DETECTORS
from ..utils.setting_errors import SettingError
from . import distributed as du
from .config import TrainConfig
from .distributed import DistInfo

__all__ = ["resolve_data", "build_datasets", "resolve_num_classes", "build_loaders"]

_PATHS = ("train_img", "train_ann", "val_img", "val_ann")


def _use_synthetic_set(config: TrainConfig, info: DistInfo) -> str:
    root = config.synthetic_dir or os.path.join(config.output_dir, "synthetic_data")
    spec = dict(
        num_train=config.synthetic_train,
        num_val=config.synthetic_val,
        image_size=config.synthetic_size,
        seed=0,
    )
    if info.is_main:
        generate_synthetic_coco(root, **spec)
    du.barrier()
    paths = generate_synthetic_coco(root, **spec)  # the other ranks find it made
    config.train_img, config.train_ann = paths["train_img"], paths["train_ann"]
    config.val_img, config.val_ann = paths["val_img"], paths["val_ann"]
    if config.img_size is None:
        config.img_size = config.synthetic_size
    return f"synthetic set in {root}"


def _check_pair(config: TrainConfig, img: str, ann: str) -> None:
    if bool(getattr(config, img)) != bool(getattr(config, ann)):
        raise SettingError(lambda n: f"{n(img)} and {n(ann)} must be given together")


def _use_data_path(config: TrainConfig) -> None:
    given = [k for k in _PATHS if getattr(config, k)]
    if given:
        raise SettingError(
            lambda n: (
                f"{n('data_path')} names a folder in COCO's layout and replaces "
                f"{'/'.join(n(k) for k in _PATHS)}; got both {n('data_path')} and "
                f"{', '.join(n(k) for k in given)}"
            )
        )
    for key, path in coco_layout_paths(config.data_path).items():
        setattr(config, key, path)


def resolve_data(config: TrainConfig, info: DistInfo) -> str:
    """Fills in the data paths (from `data_path`, or generating the synthetic set when none is
    given) and the default image size, in `config`. Returns a short description of the data."""
    if config.data_path:
        _use_data_path(config)
    elif not any(getattr(config, k) for k in _PATHS):
        return _use_synthetic_set(config, info)
    _check_pair(config, "train_img", "train_ann")
    _check_pair(config, "val_img", "val_ann")
    if not config.train_img:
        raise SettingError(
            lambda n: (
                f"{n('val_img')}/{n('val_ann')} given without {n('train_img')}/{n('train_ann')}"
            )
        )
    if config.img_size is None:
        config.img_size = 640
    val = f", val {config.val_ann}" if config.val_ann else " (no validation set)"
    return f"train {config.train_ann}{val}"


def build_datasets(
    config: TrainConfig, info: DistInfo
) -> tuple[CocoDetection, CocoDetection | None]:
    """(training set, validation set or None) of the resolved data paths. Detectors that train
    on instance masks get them in the training targets; evaluation scores boxes only."""
    dataset = CocoInstanceMasks if DETECTORS[config.detector].masks else CocoDetection
    train_set = dataset(
        config.train_img,
        config.train_ann,
        build_transforms(True, config.hflip, config.data_augmentation, config.img_size),
        max_images=config.max_images or None,
        name="train",
        img_size=config.img_size,
    )
    if not config.val_img:
        return train_set, None
    val_set = CocoDetection(
        config.val_img,
        config.val_ann,
        build_transforms(False),
        max_images=config.max_val_images or None,
        name="val",
        img_size=config.img_size,
    )
    missing = set(val_set.coco.getCatIds()) - set(train_set.label_to_cat_id[1:])
    if missing and info.is_main:
        warnings.warn(
            f"categories {sorted(missing)} of {config.val_ann} are not in {config.train_ann}: "
            "the model cannot detect them"
        )
    return train_set, val_set


def resolve_num_classes(config: TrainConfig, train_set: CocoDetection) -> None:
    """Sets config.num_classes from the training set, or checks that the given one suffices."""
    derived = train_set.num_classes
    if config.num_classes is None:
        config.num_classes = derived
    elif config.num_classes < derived:
        given = config.num_classes
        raise SettingError(
            lambda n: (
                f"{n('num_classes')} {given} is too small: {config.train_ann} has "
                f"{derived - 1} categories, which need num_classes >= {derived}"
            )
        )


def build_loaders(
    config: TrainConfig,
    train_set: CocoDetection,
    val_set: CocoDetection | None,
    info: DistInfo,
) -> tuple[DataLoader, DataLoader | None]:
    """(training loader, validation loader or None), sharded over the ranks of `info`."""
    factor = config.aspect_ratio_group_factor
    groups = None if factor < 0 else aspect_ratio_groups(image_aspect_ratios(train_set), factor)
    share, size = math.ceil(len(train_set) / info.world_size), config.batch_size
    if groups is not None and share < size:
        raise SettingError(
            lambda n: (
                f"{n('batch_size')} {size} is larger than the {share} training images per "
                f"process: batches grouped by aspect ratio would be empty; lower "
                f"{n('batch_size')} or pass {n('aspect_ratio_group_factor')} -1"
            )
        )
    train_loader = make_loader(
        train_set,
        size,
        train=True,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        workers=config.workers,
        group_ids=groups,
    )
    if val_set is None:
        return train_loader, None
    val_loader = make_loader(
        val_set,
        config.eval_batch_size,
        train=False,
        rank=info.rank,
        world_size=info.world_size,
        workers=config.workers,
    )
    return train_loader, val_loader
