"""Train a detector with or without an LGF block: `python -m train.train --help`.

Examples:
  python -m train.train                                   # synthetic small-object set, mode lgf
  python -m train.train --train-img D/images --train-ann D/train.json \
      --val-img D/images --val-ann D/val.json --mode baseline --backbone resnet18 --img-size 512
  python -m train.train --data-path COCO --detector fasterrcnn --weights-backbone DEFAULT \
      --opt sgd --lr 0.02 -b 2 --aspect-ratio-group-factor 3   # torchvision's reference flags
  torchrun --nproc_per_node=2 -m train.train ...          # DistributedDataParallel

One flag per field of lgf.training.config.TrainConfig, with its defaults; the run itself is
lgf.training.trainer.Trainer. Exit code 2 on bad input, 3 on a non-finite loss.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from lgf.blocks import GATES
from lgf.data import DatasetError
from lgf.data.transforms import AUGMENTATIONS
from lgf.detectors import DETECTORS
from lgf.evaluation.area_ranges import ALL_METRIC_NAMES, AREA_RANGES
from lgf.models import BACKBONES, INSERT_LEVELS
from lgf.modes import MODES
from lgf.training.checkpoint import CheckpointError
from lgf.training.config import TrainConfig
from lgf.training.loop import NonFiniteLossError
from lgf.training.lr_schedule import SCHEDULES
from lgf.training.optim import OPTIMIZERS
from lgf.training.settings import AMP_SETTINGS
from lgf.training.trainer import Trainer
from lgf.utils.setting_errors import NamesSettings

from .flags import (
    HelpFormatter,
    command_name,
    flag,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    report_error,
)


def _group_factor(v: str) -> int:
    i = int(v)
    if i < -1:
        raise argparse.ArgumentTypeError(f"expected an integer >= -1, got {v}")
    return i


def _data_flags(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument(
        "--data-path",
        help="a folder in COCO's layout: train2017/, val2017/, "
        "annotations/instances_{train,val}2017.json (instead of --train-img etc.)",
    )
    d.add_argument("--train-img", help="training images folder")
    d.add_argument("--train-ann", help="training COCO JSON")
    d.add_argument("--val-img", help="validation images folder")
    d.add_argument("--val-ann", help="validation COCO JSON")
    d.add_argument(
        "--synthetic-dir",
        help="where the synthetic set is generated when no data flags are given "
        "(default: OUTPUT_DIR/synthetic_data)",
    )
    d.add_argument("--synthetic-train", type=positive_int, help="synthetic training images")
    d.add_argument("--synthetic-val", type=positive_int, help="synthetic validation images")
    d.add_argument("--synthetic-size", type=positive_int, help="synthetic image side (px)")
    d.add_argument(
        "--max-images", type=non_negative_int, help="use only the first N training images (0 = all)"
    )
    d.add_argument(
        "--max-val-images",
        type=non_negative_int,
        help="evaluate only the first N validation images (0 = all)",
    )
    d.add_argument("--hflip", type=float, help="horizontal-flip probability in training")
    d.add_argument(
        "--data-augmentation",
        choices=AUGMENTATIONS,
        help="training augmentation policy (torchvision's): hflip; ssd (photometric distortion, "
        "zoom out, IoU crop, flip); ssdlite (IoU crop, flip); multiscale (a random input size "
        "per batch, 0.6-1.0 x --img-size, and flip); lsj (large-scale jitter to a square "
        "--img-size, flip)",
    )
    d.add_argument(
        "--aspect-ratio-group-factor",
        type=_group_factor,
        help="batch images of similar aspect ratio: 2k+1 bins between 1/2 and 2 (0: portrait "
        "vs landscape; -1: no grouping)",
    )
    d.add_argument("-j", "--workers", type=non_negative_int, help="DataLoader worker processes")


def _model_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model")
    m.add_argument(
        "--detector",
        choices=tuple(DETECTORS),
        help="retinanet (ResNet-18 to -101) or torchvision's other ResNet-50 FPN detectors; "
        "maskrcnn needs segmentations in the annotations",
    )
    m.add_argument(
        "--mode",
        choices=sorted(MODES),
        help="baseline, a block inserted before the FPN (lgf, lgf_paper, se, cbam, glmd) or an "
        "FPN replacement (sie_fpn, asff)",
    )
    m.add_argument("--gate", choices=GATES, help="LGF gate variant (mode lgf)")
    m.add_argument(
        "--insert-level", choices=tuple(INSERT_LEVELS), help="backbone level of the block"
    )
    m.add_argument("--backbone", choices=tuple(BACKBONES), help="ResNet depth")


def _start_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("starting weights")
    m.add_argument(
        "--weights-backbone",
        help="torchvision backbone weights name, e.g. IMAGENET1K_V1 or DEFAULT (downloads); "
        "none: random init",
    )
    m.add_argument(
        "--weights",
        help="torchvision weights of the whole detector, trained on COCO, e.g. DEFAULT or "
        "COCO_V1 (downloads; the class head is re-initialised for this data's classes)",
    )
    m.add_argument(
        "--finetune-from",
        metavar="CKPT",
        help="start from one of our checkpoints: load every tensor whose name and shape "
        "match, re-initialise the class head when the class count differs (not with --resume)",
    )
    m.add_argument(
        "--trainable-backbone-layers",
        type=int,
        choices=range(6),
        metavar="{0..5}",
        help="ResNet stages that train when starting from pretrained weights; none: "
        "torchvision's (3)",
    )


def _model_size_flags(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("classes, input size, anchors, inference")
    m.add_argument(
        "--num-classes",
        type=positive_int,
        help="model classes in torchvision's convention (categories + 1 for the unused "
        "label 0); none: derived from the training annotation file",
    )
    m.add_argument(
        "--img-size",
        type=positive_int,
        help="the longer image side after resizing (RetinaNet min_size = max_size = this); "
        "default: 640, or the synthetic image size on the synthetic set",
    )
    m.add_argument(
        "--anchor-sizes",
        type=positive_int,
        nargs=5,
        metavar="S",
        help="anchor base sizes of the five FPN levels (e.g. 16 32 64 128 256 for small "
        "objects); none: torchvision's 32 64 128 256 512 (not for fcos)",
    )
    m.add_argument(
        "--score-thresh", type=non_negative_float, help="minimum detection score at inference"
    )
    m.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm in multi-process runs")


def _optimiser_flags(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=positive_int, help="training epochs")
    o.add_argument(
        "-b", "--batch-size", type=positive_int, help="images per process per micro-batch"
    )
    o.add_argument("--accum-steps", type=positive_int, help="gradient accumulation steps")
    o.add_argument(
        "--opt",
        choices=OPTIMIZERS,
        help="AdamW trains from scratch more reliably; torchvision's COCO recipe with a "
        "pretrained backbone is --opt sgd --lr 0.01 (batch 16)",
    )
    o.add_argument("--lr", type=positive_float, help="peak learning rate")
    o.add_argument("--momentum", type=non_negative_float, help="SGD momentum")
    o.add_argument(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=non_negative_float,
        help="weight decay of the weights (see --norm-weight-decay for the rest)",
    )
    o.add_argument(
        "--norm-weight-decay",
        type=non_negative_float,
        help="weight decay of the normalization layers' parameters; every other parameter, "
        "biases included, then gets --wd (torchvision's meaning); none: no decay on any 1-D "
        "parameter (norms, biases, the blocks' gates)",
    )
    o.add_argument("--lr-schedule", choices=SCHEDULES, help="learning-rate schedule")
    o.add_argument(
        "--lr-steps",
        type=positive_int,
        nargs="*",
        help="epochs at which the step schedule multiplies the lr by --lr-gamma",
    )
    o.add_argument("--lr-gamma", type=positive_float, help="factor of each step of --lr-steps")
    o.add_argument(
        "--min-lr-ratio",
        type=non_negative_float,
        help="final lr of the cosine schedule, as a fraction of --lr",
    )
    o.add_argument(
        "--warmup-iters",
        type=non_negative_int,
        help="linear warm-up length in optimizer steps (capped at a third of the run)",
    )
    o.add_argument(
        "--warmup-factor", type=non_negative_float, help="lr factor at the start of the warm-up"
    )
    o.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        choices=AMP_SETTINGS,
        help="mixed precision; bare --amp = auto: fp16 on CUDA (with a GradScaler), bf16 on CPU",
    )
    o.add_argument(
        "--clip-grad", type=non_negative_float, help="max gradient norm (0 = no clipping)"
    )


def _regulariser_and_limit_flags(p: argparse.ArgumentParser) -> None:
    o = p.add_argument_group("regularisers, EMA, run length")
    o.add_argument(
        "--feature-enhancement",
        action="store_true",
        help="add the feature-enhancement regulariser to the loss: fe_lambda4 * sum ||W|| over "
        "layer4 convs - fe_lambda2 * sum var(W) over layer2 convs (any mode)",
    )
    o.add_argument("--fe-lambda4", type=non_negative_float, help="weight of the layer4 norm term")
    o.add_argument(
        "--fe-lambda2", type=non_negative_float, help="weight of the layer2 variance term"
    )
    o.add_argument(
        "--ema", action="store_true", help="keep an EMA of the weights (evaluated and saved)"
    )
    o.add_argument("--ema-decay", type=float, help="EMA decay after the warm-up")
    o.add_argument(
        "--ema-ramp", type=positive_float, help="EMA warm-up: decay * (1 - exp(-updates / ramp))"
    )
    o.add_argument(
        "--max-iters",
        type=non_negative_int,
        help="stop after this many optimizer steps in total, as if interrupted (the lr "
        "schedule still spans --epochs; --resume continues); 0 = no limit",
    )
    o.add_argument(
        "--iters-per-epoch",
        type=non_negative_int,
        help="cap optimizer steps per epoch (0 = the whole training set)",
    )


def _evaluation_flags(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("evaluation")
    r.add_argument(
        "--eval-every",
        type=non_negative_int,
        help="evaluate every k epochs and at the end (0 = never)",
    )
    r.add_argument(
        "--eval-batch-size",
        type=positive_int,
        help="images per evaluation batch (the default is the fastest on CPU)",
    )
    r.add_argument(
        "--eval-threads",
        type=non_negative_int,
        help="torch CPU threads while evaluating, restored afterwards (0: the training count; "
        "the default is the fastest on CPU)",
    )
    r.add_argument(
        "--test-only",
        action="store_true",
        help="evaluate the starting weights (--resume, --finetune-from or --weights) and stop",
    )
    r.add_argument(
        "--best-metric",
        choices=ALL_METRIC_NAMES,
        metavar="METRIC",
        help="metric that selects best.pt (higher is better); one of --area-ranges' metrics: "
        "coco: "
        + ", ".join(AREA_RANGES["coco"].metric_names)
        + "; tiny: "
        + ", ".join(AREA_RANGES["tiny"].metric_names),
    )
    r.add_argument(
        "--area-ranges",
        choices=tuple(AREA_RANGES),
        help="size buckets of the evaluation: coco (small/medium/large) or tiny (AI-TOD's very "
        "tiny/tiny/small/medium)",
    )


def _output_flags(p: argparse.ArgumentParser) -> None:
    r = p.add_argument_group("checkpoints, logging")
    r.add_argument("--output-dir", help="folder of the checkpoints, logs and metrics")
    r.add_argument(
        "--resume",
        help="checkpoint to continue from, or 'auto' for OUTPUT_DIR/last.pt if it exists",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --output-dir (deletes its last.pt, best.pt, eval/, logs, "
        "plot and summary); without it or --resume, a folder holding a run is refused",
    )
    r.add_argument(
        "--save-every-iters",
        type=non_negative_int,
        help="also write last.pt every N optimizer steps (0 = at epoch ends only)",
    )
    r.add_argument("--log-every", type=positive_int, help="log the loss every N steps")
    r.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    r.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard scalars (losses, lr, metrics) to OUTPUT_DIR/tensorboard; "
        "needs the tensorboard package",
    )


def _system_flags(p: argparse.ArgumentParser) -> None:
    s = p.add_argument_group("system")
    s.add_argument("--seed", type=int, help="seed of the weights, the order and the augmentation")
    s.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms (warn only) and no cuDNN benchmarking",
    )
    s.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--dist-url", help="init_method of multi-process runs")
    s.add_argument(
        "--threads",
        type=non_negative_int,
        help="torch CPU threads per process (0 = PyTorch's default)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The trainer's parser: one flag per TrainConfig field, defaults from TrainConfig."""
    p = argparse.ArgumentParser(
        prog=command_name("train"),
        description="Train a detector (RetinaNet, FCOS, Faster/Mask R-CNN; optionally with an "
        "LGF / SE / CBAM block) on COCO-style data. With no data flags it generates a synthetic "
        "small-object set and trains on it.",
        formatter_class=HelpFormatter,
    )
    p.set_defaults(**dataclasses.asdict(TrainConfig()))  # before the flags: help shows them
    for add in (
        _data_flags,
        _model_flags,
        _start_flags,
        _model_size_flags,
        _optimiser_flags,
        _regulariser_and_limit_flags,
        _evaluation_flags,
        _output_flags,
        _system_flags,
    ):
        add(p)
    return p


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """The TrainConfig of a command line."""
    return TrainConfig(**vars(build_parser().parse_args(argv)))


def run(config: TrainConfig) -> dict[str, Any]:
    """Trains; returns the run's summary. Errors about settings name the flags."""
    try:
        return Trainer(config).run()
    except NamesSettings as exc:
        raise exc.renamed(flag).with_traceback(exc.__traceback__) from None


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: bad input and a non-finite loss exit with a message (codes 2
    and 3), not a traceback."""
    config = parse_args(argv)
    try:
        run(config)
    except (NonFiniteLossError, DatasetError, CheckpointError, FileNotFoundError, ValueError) as e:
        report_error(e)
        sys.exit(3 if isinstance(e, NonFiniteLossError) else 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
