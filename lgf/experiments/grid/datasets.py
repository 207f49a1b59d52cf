"""The datasets of a grid, as dicts of absolute paths.

A dataset is given as `synthetic` (the trainer's generated set, made once under
OUT/_data/synthetic and shared by every run), as a folder DIR holding train.json and val.json
with the images in DIR/images (or DIR/train and DIR/val, or DIR itself), as NAME=DIR to name it,
or by explicit train/val image folders and annotation files. Each dataset dict holds name,
train_img, train_ann, val_img, val_ann, test_img, test_ann (None without a test split) and
"extra": training flags the dataset needs (the synthetic set's image size).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

from ...data import generate_synthetic_coco
from ...training.config import TrainConfig
from ...utils.setting_errors import MissingPathError, SettingError

__all__ = ["resolve_datasets", "dataset_from_dir"]

_PATH_KEYS = ("train_img", "train_ann", "val_img", "val_ann")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def dataset_from_dir(name: str, root: str) -> dict[str, Any]:
    """The dataset in folder `root` (train.json, val.json and the images), named `name`."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise MissingPathError(lambda n: f"{n('dataset')} {name}: folder not found: {root!r}")
    anns = {s: os.path.join(root, f"{s}.json") for s in ("train", "val")}
    for path in anns.values():
        if not os.path.isfile(path):
            raise MissingPathError(
                lambda n, path=path: (
                    f"{n('dataset')} {name}: {path!r} not found (a dataset "
                    "folder needs train.json and val.json)"
                )
            )
    if os.path.isdir(os.path.join(root, "images")):
        imgs = {s: os.path.join(root, "images") for s in anns}
    elif all(os.path.isdir(os.path.join(root, s)) for s in anns):
        imgs = {s: os.path.join(root, s) for s in anns}
    else:
        imgs = {s: root for s in anns}
    return {
        "name": name,
        "train_img": imgs["train"],
        "train_ann": anns["train"],
        "val_img": imgs["val"],
        "val_ann": anns["val"],
        "extra": [],
    }


def _synthetic_dataset(name: str, out_root: str, train: TrainConfig) -> dict[str, Any]:
    paths = generate_synthetic_coco(
        os.path.join(out_root, "_data", "synthetic"),
        num_train=train.synthetic_train,
        num_val=train.synthetic_val,
        image_size=train.synthetic_size,
        seed=0,
    )
    ds = {"name": name, **{k: os.path.abspath(v) for k, v in paths.items()}, "extra": []}
    if train.img_size is None:  # what the trainer does on its own synthetic set
        ds["extra"] = ["--img-size", str(train.synthetic_size)]
    return ds


def _from_spec(spec: str, out_root: str, train: TrainConfig) -> dict[str, Any]:
    """'synthetic', DIR, NAME=DIR or NAME=synthetic -> a dataset dict."""
    name, sep, path = spec.partition("=")
    if not sep:
        if spec == "synthetic":
            name, path = spec, None
        else:
            name, path = os.path.basename(os.path.normpath(spec)), spec
    if path is None or path == "synthetic":
        return _synthetic_dataset(name, out_root, train)
    return dataset_from_dir(name, path)


def _check_names(datasets: Sequence[dict[str, Any]]) -> None:
    names = [d["name"] for d in datasets]
    for name in names:
        if not _NAME.fullmatch(name) or name.startswith("_"):
            raise SettingError(
                lambda n, name=name: (
                    f"{n('dataset')} name {name!r}: use letters, digits, '_', "
                    "'.', '-' (not starting with '_')"
                )
            )
    if len(set(names)) != len(names):
        raise SettingError(lambda n: f"{n('dataset')} names must be unique, got {names}")


def _attach_test(datasets: list[dict[str, Any]], test_img: str | None, test_ann: str | None):
    if bool(test_img) != bool(test_ann):
        raise SettingError(lambda n: f"{n('test_img')} and {n('test_ann')} must be given together")
    for d in datasets:
        d["test_img"] = d["test_ann"] = None
    if not test_img:
        return
    if len(datasets) != 1:
        raise SettingError(lambda n: f"{n('test_img')}/{n('test_ann')} need exactly one dataset")
    for path, key in ((test_img, "test_img"), (test_ann, "test_ann")):
        if not os.path.exists(path):
            raise MissingPathError(lambda n, p=path, k=key: f"{n(k)}: not found: {p!r}")
    datasets[0]["test_img"] = os.path.abspath(test_img)
    datasets[0]["test_ann"] = os.path.abspath(test_ann)


def resolve_datasets(
    specs: Sequence[str] | None,
    out_root: str,
    train: TrainConfig,
    explicit: dict[str, str | None] | None = None,
    data_name: str = "data",
    test_img: str | None = None,
    test_ann: str | None = None,
) -> list[dict[str, Any]]:
    """The grid's datasets: the `explicit` one (train_img, train_ann, val_img, val_ann, all or
    none; named `data_name`), then one per spec of `specs` (default: synthetic, when neither is
    given). `train` holds the runs' training settings (synthetic set size, image size); the
    optional test split needs exactly one dataset."""
    datasets = []
    explicit = explicit or {}
    given = [explicit.get(k) for k in _PATH_KEYS]
    if any(given):
        if not all(given):
            raise SettingError(
                lambda n: (
                    ", ".join(n(k) for k in _PATH_KEYS[:3])
                    + f" and {n(_PATH_KEYS[3])} must be given together"
                )
            )
        paths = {k: os.path.abspath(explicit[k]) for k in _PATH_KEYS}
        datasets.append({"name": data_name, **paths, "extra": []})
    for spec in specs or ([] if datasets else ["synthetic"]):
        datasets.append(_from_spec(spec, out_root, train))
    _check_names(datasets)
    _attach_test(datasets, test_img, test_ann)
    return datasets
