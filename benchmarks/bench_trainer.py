"""Our trainer against torchvision's detection reference: steady-state seconds per iteration.

    python benchmarks/bench_trainer.py --tv-references DIR            # aerial-cars-kit, CPU
    python benchmarks/bench_trainer.py --tv-references DIR --data-path COCO --img-size 800

DIR is a copy of torchvision's `references/detection` (train.py, engine.py, utils.py,
transforms.py, presets.py, coco_utils.py, coco_eval.py, group_by_aspect_ratio.py) that you
provide; nothing of it is part of this repository. Without --data-path the aerial-cars-kit set
(../shared/data/aerial-cars-kit) is arranged in COCO's layout in a temporary folder (symlinks).

Both trainers train the same model (torchvision's RetinaNet ResNet-50 FPN v1, random weights,
the same class count and input size: min_size = max_size = --img-size) on the same data with
the same batch size, workers, threads, optimizer (SGD, lr 0.02, momentum 0.9, weight decay 1e-4,
no gradient clipping, full precision), horizontal flips and aspect-ratio grouping. Short runs of
each alternate (round by round, the order flipping each round); in every run the first
--warmup steps are dropped and the seconds between consecutive optimizer steps (data loading
included) are kept, each with the padded shape of its batch. Grouped batches hold images of one
shape, and which shapes a short run meets is chance, so the times are compared shape by shape:
the median per shape and trainer, and their mean weighted by how often each shape occurred in
all runs. Reports those, the ratio ours / reference, and writes JSON to benchmarks/results/ (or
--json). Only the ratio is meaningful on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from lgf.utils.atomic_write import write_json  # noqa: E402

KIT = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "aerial-cars-kit"))
MODEL = "retinanet_resnet50_fpn"


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--tv-references", required=True, help="torchvision's references/detection")
    p.add_argument("--data-path", help="a COCO-layout folder (default: aerial-cars-kit)")
    p.add_argument("--img-size", type=int, default=512, help="min_size = max_size of the model")
    p.add_argument("-b", "--batch-size", type=int, default=2, help="images per step")
    p.add_argument("-j", "--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--group-factor", type=int, default=3, help="--aspect-ratio-group-factor")
    p.add_argument("--steps", type=int, default=14, help="optimizer steps per run")
    p.add_argument("--warmup", type=int, default=4, help="steps of each run not timed")
    p.add_argument("--rounds", type=int, default=3, help="runs of each trainer, alternating")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    p.add_argument(
        "--json", default=os.path.join(HERE, "results", "bench_trainer_cpu.json"), help="output"
    )
    args = p.parse_args(argv)
    if args.steps - args.warmup < 2:
        p.error("--steps must exceed --warmup by at least 2 (two timed intervals)")
    return args


def coco_layout_from_kit(kit: str, root: str) -> str:
    """aerial-cars-kit as a COCO-layout folder of symlinks under `root`."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for split, ann in (("train", "train.json"), ("val", "val.json")):
        os.symlink(os.path.join(kit, "images"), os.path.join(root, f"{split}2017"))
        os.symlink(
            os.path.join(kit, ann), os.path.join(root, "annotations", f"instances_{split}2017.json")
        )
    return root


def class_count(data_path: str) -> int:
    """1 + the largest category id: what the reference needs (it keeps COCO's ids as labels)."""
    with open(os.path.join(data_path, "annotations", "instances_train2017.json")) as f:
        return 1 + max(c["id"] for c in json.load(f)["categories"])


def _ours_flags(a, data: str, out: str, classes: int) -> list[str]:
    return (
        f"--data-path {data} --detector retinanet --mode baseline --backbone resnet50 "
        f"--num-classes {classes} --img-size {a.img_size} -b {a.batch_size} -j {a.workers} "
        f"--threads {a.threads} --epochs 1 --opt sgd --lr 0.02 --momentum 0.9 --wd 1e-4 "
        f"--clip-grad 0 --amp none --data-augmentation hflip "
        f"--aspect-ratio-group-factor {a.group_factor} --eval-every 0 --device {a.device} "
        f"--output-dir {out} --no-progress"
    ).split()


def _reference_flags(a, data: str, out: str) -> list[str]:
    return (
        f"--data-path {data} --model {MODEL} --device {a.device} -b {a.batch_size} "
        f"-j {a.workers} --epochs 1 --opt sgd --lr 0.02 --momentum 0.9 --wd 1e-4 "
        f"--aspect-ratio-group-factor {a.group_factor} --data-augmentation hflip --use-v2 "
        f"--output-dir {out}"
    ).split()


def timed_run(a, trainer: str, data: str, classes: int, work: str) -> list[list]:
    """[seconds, batch shape] of every step after the warm-up (the time since the step before),
    from one fresh process."""
    out_dir = tempfile.mkdtemp(prefix=f"{trainer}_", dir=work)
    stamps_file = os.path.join(out_dir, "stamps.json")
    cmd = [sys.executable, os.path.join(HERE, "trainer_timing.py"), trainer]
    cmd += ["--steps", str(a.steps), "--out", stamps_file, "--threads", str(a.threads)]
    if trainer == "ours":
        cmd += ["--"] + _ours_flags(a, data, out_dir, classes)
    else:
        cmd += ["--tv-references", a.tv_references, "--img-size", str(a.img_size)]
        cmd += ["--num-classes", str(classes), "--"] + _reference_flags(a, data, out_dir)
    log = os.path.join(out_dir, "log.txt")
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=a.timeout)
    record = json.load(open(stamps_file)) if os.path.isfile(stamps_file) else {}
    stamps, shapes = record.get("stamps", []), record.get("shapes", [])
    if proc.returncode != 0:
        tail = open(log).read()[-3000:]
        raise RuntimeError(f"{trainer} run failed (exit {proc.returncode}):\n{tail}")
    if len(stamps) < a.steps:
        raise RuntimeError(
            f"{trainer} ran {len(stamps)} steps, fewer than --steps {a.steps}: one epoch of the "
            "training set holds fewer batches; lower --steps or --batch-size"
        )
    first = max(a.warmup, 1)
    return [
        [stamps[i] - stamps[i - 1], "x".join(map(str, shapes[i]))] for i in range(first, a.steps)
    ]


def summarize(times: dict[str, list[list[list]]]) -> dict:
    """Per shape: the median seconds of each trainer; overall: their mean weighted by how often
    each shape occurred (shapes that only one trainer met are reported, not weighted)."""
    steps = {k: [s for run in runs for s in run] for k, runs in times.items()}
    shapes = sorted({shape for k in steps for _, shape in steps[k]})
    per_shape = {}
    for shape in shapes:
        row = {k: [t for t, s in steps[k] if s == shape] for k in steps}
        per_shape[shape] = {
            "count": sum(len(v) for v in row.values()),
            **{f"{k}_median_s": statistics.median(v) if v else None for k, v in row.items()},
            **{f"{k}_steps": len(v) for k, v in row.items()},
        }
    both = [r for r in per_shape.values() if r["ours_median_s"] and r["reference_median_s"]]
    weight = sum(r["count"] for r in both)
    overall = {k: sum(r[f"{k}_median_s"] * r["count"] for r in both) / weight for k in steps}
    return {
        "per_shape": per_shape,
        "weighted_median_s": overall,
        "ratio_ours_over_reference": overall["ours"] / overall["reference"],
    }


def main(argv=None) -> dict:
    a = parse_args(argv)
    times = {"ours": [], "reference": []}
    t0 = time.time()
    # Each run writes a checkpoint of a few hundred MB: the folder goes when the benchmark ends.
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as work:
        data = a.data_path or coco_layout_from_kit(KIT, os.path.join(work, "coco"))
        classes = class_count(data)
        for r in range(a.rounds):
            order = ("reference", "ours") if r % 2 == 0 else ("ours", "reference")
            for trainer in order:
                times[trainer].append(timed_run(a, trainer, data, classes, work))
                last = statistics.median(t for t, _ in times[trainer][-1])
                print(f"round {r + 1} {trainer:9s} median {last:.3f} s/iter", flush=True)
    result = summarize(times)
    result.update(
        settings={k: v for k, v in vars(a).items() if k != "json"},
        data=data if a.data_path else f"aerial-cars-kit in COCO layout ({KIT})",
        model=MODEL,
        num_classes=classes,
        times_s=times,
        wall_s=time.time() - t0,
        torch=torch.__version__,
        machine=platform.platform(),
        cpus=os.cpu_count(),
    )
    for shape, row in result["per_shape"].items():
        cells = [
            f"{k} {row[f'{k}_median_s']:.3f} s ({row[f'{k}_steps']} steps)"
            if row[f"{k}_median_s"] is not None
            else f"{k} -"
            for k in ("reference", "ours")
        ]
        print(f"batch {shape}: " + ", ".join(cells))
    for k, v in result["weighted_median_s"].items():
        print(f"{k:9s} {v:.3f} s/iter (per-shape medians, weighted by shape counts)")
    print(f"ours / reference = {result['ratio_ours_over_reference']:.3f}")
    write_json(result, a.json)
    print(f"wrote {a.json}")
    return result


if __name__ == "__main__":
    main()
