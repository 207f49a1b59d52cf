"""The datasets and loaders of a training run (docs/design.md §5).

With no data paths at all the run trains on the deterministic synthetic set, generated once
under `synthetic_dir` (default OUTPUT_DIR/synthetic_data) by rank 0. Errors name the settings
(`train_img`, ...); the command line shows them as its flags.
"""

from __future__ import annotations

import os
import warnings

from torch.utils.data import DataLoader

from ..data import CocoDetection, build_transforms, generate_synthetic_coco, make_loader
from ..utils.setting_errors import SettingError
from . import distributed as du
from .config import TrainConfig
from .distributed import DistInfo

__all__ = ["resolve_data", "build_datasets", "resolve_num_classes", "build_loaders"]


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


def resolve_data(config: TrainConfig, info: DistInfo) -> str:
    """Fills in the data paths (generating the synthetic set when none is given) and the default
    image size, in `config`. Returns a short description of the data."""
    if not any((config.train_img, config.train_ann, config.val_img, config.val_ann)):
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
    """(training set, validation set or None) of the resolved data paths."""
    train_set = CocoDetection(
        config.train_img,
        config.train_ann,
        build_transforms(True, config.hflip),
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
    train_loader = make_loader(
        train_set,
        config.batch_size,
        train=True,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        workers=config.workers,
    )
    if val_set is None:
        return train_loader, None
    val_loader = make_loader(
        val_set,
        config.eval_batch_size or config.batch_size,
        train=False,
        rank=info.rank,
        world_size=info.world_size,
        workers=config.workers,
    )
    return train_loader, val_loader
