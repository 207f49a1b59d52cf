"""Demo: a RetinaNet without and with the LGF block, trained briefly on the synthetic small-object
set and evaluated with pycocotools; prints a side-by-side table.

    python -m train.demo                      # about 5-8 minutes on 2 CPU cores
    python -m train.demo --epochs 2           # quicker, lower AP
    python -m train.demo --modes baseline lgf se cbam lgf_paper

Outputs in --output-dir (default runs/demo): data/ (the synthetic set), one training run per mode
(checkpoints, logs, training_curves.png) and demo_results.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from lgf.counting import count_params
from lgf.data import generate_synthetic_coco
from lgf.modes import MODES, model_from_checkpoint
from lgf.training.checkpoint import load_checkpoint
from lgf.utils.atomic_write import write_json

from .flags import HelpFormatter, add_progress_flag, deprecated_alias
from .train import parse_args, run

ROWS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AR100", "AR_small")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    p.add_argument("--output-dir", default="runs/demo", help="folder of the data and the runs")
    p.add_argument(
        "--modes",
        nargs="+",
        default=["baseline", "lgf"],
        choices=sorted(MODES),
        help="trainer modes to compare (the first is the reference column)",
    )
    p.add_argument("--backbone", default="resnet18", help="ResNet depth")
    p.add_argument("--epochs", type=int, default=6, help="training epochs per mode")
    p.add_argument(
        "--img-size", type=int, default=128, help="synthetic image side = model input size"
    )
    p.add_argument("--num-train", type=int, default=160, help="synthetic training images")
    p.add_argument("--num-val", type=int, default=40, help="synthetic validation images")
    p.add_argument("--batch-size", type=int, default=4, help="images per step")
    p.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the runs")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_progress_flag(p)
    deprecated_alias(p, "--progress", "--no-progress (bars are on by default)", "no_progress",
                     nargs=0, const=False)  # fmt: skip
    return p


def _train_argv(mode: str, data: dict[str, str], out: str, a: argparse.Namespace) -> list[str]:
    """The trainer's flags of one demo run."""
    argv = [
        "--train-img",
        data["train_img"],
        "--train-ann",
        data["train_ann"],
        "--val-img",
        data["val_img"],
        "--val-ann",
        data["val_ann"],
        "--output-dir",
        out,
        "--mode",
        mode,
        "--backbone",
        a.backbone,
        "--img-size",
        str(a.img_size),
        "--anchor-sizes",
        "16",
        "32",
        "64",
        "128",
        "256",
        "--epochs",
        str(a.epochs),
        "--batch-size",
        str(a.batch_size),
        "--opt",
        "adamw",
        "--lr",
        str(a.lr),
        "--warmup-iters",
        "30",
        "--clip-grad",
        "10",
        "--eval-every",
        str(a.epochs),
        "--seed",
        str(a.seed),
        "--workers",
        str(a.workers),
        "--device",
        a.device,
        "--log-every",
        "10",
    ]
    if a.no_progress:
        argv.append("--no-progress")
    return argv


def train_mode(mode: str, data: dict[str, str], a: argparse.Namespace) -> dict[str, Any]:
    """Trains one mode; returns its final metrics, parameter count and training time."""
    out = os.path.join(a.output_dir, mode)
    t0 = time.time()
    summary = run(parse_args(_train_argv(mode, data, out, a)))
    model, _ = model_from_checkpoint(load_checkpoint(summary["last_checkpoint"]), use_ema=False)
    metrics = dict(summary["metrics"])
    metrics["params_M"] = count_params(model) / 1e6
    metrics["train_s"] = time.time() - t0
    metrics["run_dir"] = os.path.abspath(out)
    return metrics


def format_table(results: dict[str, dict[str, Any]]) -> str:
    modes = list(results)
    base = modes[0]
    head = f"{'metric':<16}" + "".join(f"{m:>12}" for m in modes)
    if len(modes) > 1:
        head += "".join(f"{'d(' + m + ')':>14}" for m in modes[1:])
    lines = [head, "-" * len(head)]
    rows = (
        list(ROWS) + [f"AP[{c}]" for c in results[base]["per_class_AP"]] + ["params_M", "train_s"]
    )
    for r in rows:
        if r.startswith("AP["):
            vals = [results[m]["per_class_AP"][r[3:-1]] for m in modes]
        else:
            vals = [results[m][r] for m in modes]
        fmt = "{:>12.1f}" if r == "train_s" else ("{:>12.3f}" if r == "params_M" else "{:>12.4f}")
        line = f"{r:<16}" + "".join(fmt.format(v) for v in vals)
        if r not in ("train_s", "params_M"):
            line += "".join(f"{v - vals[0]:>+14.4f}" for v in vals[1:])
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    t0 = time.time()
    data = generate_synthetic_coco(
        os.path.join(a.output_dir, "data"),
        num_train=a.num_train,
        num_val=a.num_val,
        image_size=a.img_size,
        seed=a.seed,
    )
    results = {}
    for mode in a.modes:
        print(
            f"\n=== training {mode} ({a.backbone}, {a.img_size} px, {a.epochs} epochs) ===",
            flush=True,
        )
        results[mode] = train_mode(mode, data, a)
    wall = time.time() - t0
    table = format_table(results)
    print(
        f"\nSynthetic small-object set: {a.num_train} train / {a.num_val} val images of "
        f"{a.img_size} px; COCO metrics on the val set (higher is better)\n"
    )
    print(table)
    print(f"\ntotal wall time {wall:.0f} s; runs in {os.path.abspath(a.output_dir)}")
    write_json(
        {"results": results, "wall_s": wall, "args": vars(a), "table": table},
        os.path.join(a.output_dir, "demo_results.json"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
