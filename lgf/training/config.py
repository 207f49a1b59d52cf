"""`TrainConfig`: every setting of a training run and its default (docs/design.md §5).

The command line (`python -m train.train`) has one flag per field (`--field-name`), with these
defaults. A checkpoint stores the resolved settings (data paths and class count filled in) as a
dict of primitives; `lgf.modes.MODEL_ARGS` are those that define the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["TrainConfig", "RUNTIME_FIELDS", "EVAL_BATCH_SIZE", "EVAL_THREADS"]

# Evaluation defaults: the fastest per image on CPU in benchmarks/bench_eval_settings.py
# (benchmarks/results/bench_eval_settings_cpu.json: one thread 7x faster than two on a busy
# 2-core machine, where threads wait for each other; batch 4 about 10% faster than 1).
EVAL_BATCH_SIZE = 4
EVAL_THREADS = 1


@dataclass
class TrainConfig:
    """Settings of one training run. None means "derive it" where the field says so."""

    # data: a COCO-layout folder, or COCO-style folders and JSON files; none = the synthetic set
    data_path: str | None = None  # DATA/train2017, DATA/annotations/instances_train2017.json, ...
    train_img: str | None = None
    train_ann: str | None = None
    val_img: str | None = None
    val_ann: str | None = None
    synthetic_dir: str | None = None  # None: OUTPUT_DIR/synthetic_data
    synthetic_train: int = 160
    synthetic_val: int = 40
    synthetic_size: int = 128
    max_images: int = 0  # first N training images only (0 = all)
    max_val_images: int = 0
    hflip: float = 0.5
    data_augmentation: str = "hflip"  # lgf.data.transforms.AUGMENTATIONS
    aspect_ratio_group_factor: int = 3  # batches within aspect-ratio bins; -1: no grouping
    workers: int = 2

    # model (lgf.modes, lgf.detectors)
    detector: str = "retinanet"
    mode: str = "lgf"
    gate: str = "sigmoid"
    insert_level: str = "C3"
    backbone: str = "resnet50"
    weights_backbone: str | None = None
    weights: str | None = None  # torchvision weights of the whole detector (e.g. DEFAULT)
    finetune_from: str | None = None  # one of our checkpoints: start from its matching tensors
    trainable_backbone_layers: int | None = None  # None: torchvision's (3 when pretrained)
    num_classes: int | None = None  # None: from the training annotation file
    img_size: int | None = None  # None: 640, or synthetic_size on the synthetic set
    anchor_sizes: list[int] | None = None  # None: torchvision's 32 64 128 256 512
    score_thresh: float = 0.05
    sync_bn: bool = False

    # optimisation
    epochs: int = 12
    batch_size: int = 4
    accum_steps: int = 1
    opt: str = "adamw"
    lr: float = 3e-4
    momentum: float = 0.9
    weight_decay: float = 1e-4
    norm_weight_decay: float | None = None  # None: no decay on any 1-D parameter
    lr_schedule: str = "cosine"
    lr_steps: list[int] = field(default_factory=lambda: [8, 11])
    lr_gamma: float = 0.1
    min_lr_ratio: float = 0.01
    warmup_iters: int = 500
    warmup_factor: float = 0.001
    amp: str = "none"  # none, fp16, bf16, or auto (fp16 on CUDA, bf16 on CPU)
    clip_grad: float = 10.0
    feature_enhancement: bool = False
    fe_lambda4: float = 1e-5
    fe_lambda2: float = 1.0
    ema: bool = False
    ema_decay: float = 0.9998
    ema_ramp: float = 2000.0
    max_iters: int = 0  # stop after N optimizer steps in total (0 = no limit)
    iters_per_epoch: int = 0  # cap of optimizer steps per epoch (0 = the whole set)

    # evaluation, checkpoints, logging
    eval_every: int = 1
    eval_batch_size: int = EVAL_BATCH_SIZE
    eval_threads: int = EVAL_THREADS  # torch CPU threads while evaluating (0: the training count)
    test_only: bool = False  # evaluate the starting weights and stop
    best_metric: str = "AP_small"
    area_ranges: str = "coco"  # size buckets of the evaluation (lgf.evaluation.area_ranges)
    output_dir: str = "runs/train"
    resume: str | None = None  # a checkpoint, or "auto" for OUTPUT_DIR/last.pt if it exists
    overwrite: bool = False  # replace a run already in output_dir (its artefacts are deleted)
    save_every_iters: int = 0
    log_every: int = 10
    no_progress: bool = False
    tensorboard: bool = False  # also write TensorBoard scalars to OUTPUT_DIR/tensorboard

    # system
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    dist_url: str = "env://"
    threads: int = 0


# Fields that do not change what a run computes (where and how it runs, what it prints); two
# runs that differ only in these are the same experiment.
RUNTIME_FIELDS = frozenset(
    {
        "workers",
        "threads",
        "no_progress",
        "log_every",
        "device",
        "save_every_iters",
        "eval_batch_size",
        "eval_threads",
        "tensorboard",
        "dist_url",
        "resume",
        "output_dir",
        "overwrite",
    }
)
