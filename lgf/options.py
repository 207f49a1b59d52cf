"""Command-line options of the trainer (`python -m train.train`) and the evaluator."""

import argparse

from .engine import MODES
from .evaluation import METRIC_NAMES
from .lr_schedule import SCHEDULES

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")
GATES = ("sigmoid", "sum", "softmax")
INSERT_LEVELS = ("C3", "C4", "C5")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" except where the default is None (the help text says what happens)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False:
            return action.help
        return super()._get_help_string(action)


def _positive_int(v):
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return i


def _non_negative_int(v):
    i = int(v)
    if i < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return i


def _non_negative_float(v):
    f = float(v)
    if not f >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return f


def _positive_float(v):
    f = float(v)
    if not f > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return f


def build_train_parser():
    p = argparse.ArgumentParser(
        prog="python -m train.train",
        description="Train a RetinaNet (optionally with an LGF / SE / CBAM block) on COCO-style data. "
        "With no data flags it generates a synthetic small-object set and trains on it.",
        formatter_class=_HelpFormatter,
    )
    d = p.add_argument_group("data")
    d.add_argument("--train-img", help="training images folder")
    d.add_argument("--train-ann", help="training COCO JSON")
    d.add_argument("--val-img", help="validation images folder")
    d.add_argument("--val-ann", help="validation COCO JSON")
    d.add_argument(
        "--synthetic-dir",
        default=None,
        help="where the synthetic set is generated when no data flags are given "
        "(default: OUTPUT_DIR/synthetic_data)",
    )
    d.add_argument(
        "--synthetic-train", type=_positive_int, default=160, help="synthetic training images"
    )
    d.add_argument(
        "--synthetic-val", type=_positive_int, default=40, help="synthetic validation images"
    )
    d.add_argument(
        "--synthetic-size", type=_positive_int, default=128, help="synthetic image side (px)"
    )
    d.add_argument(
        "--max-images",
        type=_non_negative_int,
        default=0,
        help="use only the first N training images (0 = all)",
    )
    d.add_argument(
        "--max-val-images",
        type=_non_negative_int,
        default=0,
        help="evaluate only the first N validation images (0 = all)",
    )
    d.add_argument(
        "--hflip", type=float, default=0.5, help="horizontal-flip probability in training"
    )
    d.add_argument(
        "--workers", type=_non_negative_int, default=2, help="DataLoader worker processes"
    )

    m = p.add_argument_group("model")
    m.add_argument(
        "--mode",
        choices=sorted(MODES),
        default="lgf",
        help="baseline, a block inserted before the FPN (lgf, lgf_paper, se, cbam, glmd) or an FPN replacement (sie_fpn, asff)",
    )
    m.add_argument("--gate", choices=GATES, default="sigmoid", help="LGF gate variant (mode lgf)")
    m.add_argument(
        "--insert-level", choices=INSERT_LEVELS, default="C3", help="backbone level of the block"
    )
    m.add_argument("--backbone", choices=BACKBONES, default="resnet50")
    m.add_argument(
        "--weights-backbone",
        default=None,
        help="torchvision backbone weights name, e.g. IMAGENET1K_V1 or DEFAULT (downloads); "
        "default: random init",
    )
    m.add_argument(
        "--num-classes",
        type=_positive_int,
        default=None,
        help="model classes in torchvision's convention (categories + 1 for the unused "
        "label 0); default: derived from the training annotation file",
    )
    m.add_argument(
        "--img-size",
        type=_positive_int,
        default=None,
        help="the longer image side after resizing (RetinaNet min_size = max_size = this); "
        "default: 640, or the synthetic image size on the synthetic set",
    )
    m.add_argument(
        "--anchor-sizes",
        type=_positive_int,
        nargs=5,
        default=None,
        metavar="S",
        help="anchor base sizes of P3..P7 (e.g. 16 32 64 128 256 for small objects); "
        "default: torchvision's 32 64 128 256 512",
    )
    m.add_argument(
        "--score-thresh",
        type=_non_negative_float,
        default=0.05,
        help="minimum detection score at inference",
    )
    m.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm in multi-process runs")

    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=_positive_int, default=12)
    o.add_argument(
        "--batch-size", type=_positive_int, default=4, help="images per process per step"
    )
    o.add_argument(
        "--accum-steps", type=_positive_int, default=1, help="gradient accumulation steps"
    )
    o.add_argument(
        "--opt",
        choices=("sgd", "adamw"),
        default="adamw",
        help="AdamW trains from scratch more reliably; torchvision's COCO recipe with a "
        "pretrained backbone is --opt sgd --lr 0.01 (batch 16)",
    )
    o.add_argument("--lr", type=_positive_float, default=3e-4)
    o.add_argument("--momentum", type=_non_negative_float, default=0.9, help="SGD momentum")
    o.add_argument("--weight-decay", type=_non_negative_float, default=1e-4)
    o.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine")
    o.add_argument(
        "--lr-steps",
        type=_positive_int,
        nargs="*",
        default=[8, 11],
        help="epochs at which the step schedule multiplies the lr by --lr-gamma",
    )
    o.add_argument("--lr-gamma", type=_positive_float, default=0.1)
    o.add_argument(
        "--min-lr-ratio",
        type=_non_negative_float,
        default=0.01,
        help="final lr of the cosine schedule, as a fraction of --lr",
    )
    o.add_argument(
        "--warmup-iters",
        type=_non_negative_int,
        default=500,
        help="linear warm-up length in optimizer steps (capped at a third of the run)",
    )
    o.add_argument("--warmup-factor", type=_non_negative_float, default=0.001)
    o.add_argument(
        "--amp",
        choices=("none", "fp16", "bf16"),
        default="none",
        help="mixed precision (fp16 uses a GradScaler)",
    )
    o.add_argument(
        "--clip-grad",
        type=_non_negative_float,
        default=10.0,
        help="max gradient norm (0 = no clipping)",
    )
    o.add_argument(
        "--feature-enhancement",
        action="store_true",
        help="add the feature-enhancement regulariser to the loss: fe_lambda4 * sum ||W|| over "
        "layer4 convs - fe_lambda2 * sum var(W) over layer2 convs (any mode)",
    )
    o.add_argument("--fe-lambda4", type=_non_negative_float, default=1e-5)
    o.add_argument("--fe-lambda2", type=_non_negative_float, default=1.0)
    o.add_argument(
        "--ema", action="store_true", help="keep an EMA of the weights (evaluated and saved)"
    )
    o.add_argument("--ema-decay", type=float, default=0.9998)
    o.add_argument(
        "--ema-ramp",
        type=_positive_float,
        default=2000.0,
        help="EMA warm-up: decay * (1 - exp(-updates / ramp))",
    )
    o.add_argument(
        "--max-iters",
        type=_non_negative_int,
        default=0,
        help="stop after this many optimizer steps in total, as if interrupted (the lr "
        "schedule still spans --epochs; --resume continues); 0 = no limit",
    )
    o.add_argument(
        "--iters-per-epoch",
        type=_non_negative_int,
        default=0,
        help="cap optimizer steps per epoch (0 = the whole training set)",
    )

    r = p.add_argument_group("evaluation, checkpoints, logging")
    r.add_argument(
        "--eval-every",
        type=_non_negative_int,
        default=1,
        help="evaluate every k epochs and at the end (0 = never)",
    )
    r.add_argument(
        "--eval-batch-size", type=_positive_int, default=None, help="default: --batch-size"
    )
    r.add_argument(
        "--best-metric",
        choices=METRIC_NAMES,
        default="AP_small",
        help="metric that selects best.pt (higher is better)",
    )
    r.add_argument("--output-dir", default="runs/train")
    r.add_argument(
        "--resume",
        default=None,
        help="checkpoint to continue from, or 'auto' for OUTPUT_DIR/last.pt if it exists",
    )
    r.add_argument(
        "--save-every-iters",
        type=_non_negative_int,
        default=0,
        help="also write last.pt every N optimizer steps (0 = at epoch ends only)",
    )
    r.add_argument("--log-every", type=_positive_int, default=10, help="log the loss every N steps")
    r.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")

    s = p.add_argument_group("system")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--deterministic",
        action="store_true",
        help="torch.use_deterministic_algorithms (warn only) and no cuDNN benchmarking",
    )
    s.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    s.add_argument("--dist-url", default="env://", help="init_method of multi-process runs")
    s.add_argument(
        "--threads",
        type=_non_negative_int,
        default=0,
        help="torch CPU threads per process (0 = PyTorch's default)",
    )
    return p


def build_eval_parser():
    p = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Evaluate a training checkpoint (last.pt / best.pt) on a COCO-style set "
        "with pycocotools.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument("checkpoint", help="path to a checkpoint written by the trainer")
    p.add_argument("--val-img", required=True, help="images folder")
    p.add_argument("--val-ann", required=True, help="COCO JSON")
    p.add_argument(
        "--no-ema", action="store_true", help="use the raw weights even if an EMA is stored"
    )
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=_non_negative_int, default=0)
    p.add_argument(
        "--max-images", type=_non_negative_int, default=0, help="first N images only (0 = all)"
    )
    p.add_argument("--output-json", default=None, help="also write the metrics to this file")
    p.add_argument("--quiet", action="store_true", help="do not print pycocotools' summary table")
    return p
