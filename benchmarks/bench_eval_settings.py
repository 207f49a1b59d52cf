"""Evaluation speed per image by CPU thread count and batch size: the trainer's eval defaults.

    python benchmarks/bench_eval_settings.py                    # aerial-cars-kit val, CPU
    python benchmarks/bench_eval_settings.py --threads 1 2 --batch-sizes 1 2 4 --rounds 3

Evaluates one model (RetinaNet ResNet-50 FPN, random weights, or --checkpoint) on the same
validation images the way the trainer does (lgf.evaluation.evaluate: predictions, then
pycocotools), once per setting per round, the settings interleaved round by round, and reports
the median seconds per image of every (threads, batch size) pair and the fastest pair, which is
what lgf.training.config.EVAL_THREADS / EVAL_BATCH_SIZE should be on CPU. JSON to
benchmarks/results/bench_eval_settings_cpu.json (or --json).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from lgf.data import CocoDetection, build_transforms, make_loader  # noqa: E402
from lgf.evaluation.evaluate import evaluate  # noqa: E402
from lgf.modes import build_model, model_from_checkpoint  # noqa: E402
from lgf.training.checkpoint import load_checkpoint  # noqa: E402
from lgf.training.threads import torch_threads  # noqa: E402
from lgf.utils.atomic_write import write_json  # noqa: E402

KIT = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "aerial-cars-kit"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--val-img", default=os.path.join(KIT, "images"), help="images folder")
    p.add_argument("--val-ann", default=os.path.join(KIT, "val.json"), help="COCO JSON")
    p.add_argument("--max-images", type=int, default=8, help="first N validation images")
    p.add_argument("--checkpoint", help="a trainer checkpoint (default: random RetinaNet R50)")
    p.add_argument("--img-size", type=int, default=512, help="model input size (no checkpoint)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="CPU thread counts")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4], help="batch sizes")
    p.add_argument("--rounds", type=int, default=2, help="evaluations of every setting")
    p.add_argument("--json", default=os.path.join(HERE, "results", "bench_eval_settings_cpu.json"))
    return p.parse_args(argv)


def _model(a, num_classes: int):
    if a.checkpoint:
        return model_from_checkpoint(load_checkpoint(a.checkpoint))[0]
    config = {"mode": "baseline", "backbone": "resnet50", "num_classes": num_classes}
    return build_model(dict(config, img_size=a.img_size)).eval()


def main(argv=None) -> dict:
    a = parse_args(argv)
    ds = CocoDetection(a.val_img, a.val_ann, build_transforms(False), max_images=a.max_images)
    model = _model(a, ds.num_classes)
    settings = list(itertools.product(a.threads, a.batch_sizes))
    per_image = {s: [] for s in settings}
    device = torch.device("cpu")
    for r in range(a.rounds):
        for threads, batch in settings if r % 2 == 0 else settings[::-1]:
            loader = make_loader(ds, batch, train=False)
            with torch_threads(threads):
                t0 = time.perf_counter()
                evaluate(model, loader, ds.coco, ds.label_to_cat_id, device)
                per_image[(threads, batch)].append((time.perf_counter() - t0) / len(ds))
            print(f"round {r + 1} threads {threads} batch {batch}: "
                  f"{per_image[(threads, batch)][-1]:.3f} s/image", flush=True)  # fmt: skip
    rows = [
        {"threads": t, "batch_size": b, "median_s_per_image": statistics.median(v), "runs_s": v}
        for (t, b), v in per_image.items()
    ]
    best = min(rows, key=lambda row: row["median_s_per_image"])
    result = {
        "rows": rows,
        "fastest": {"threads": best["threads"], "batch_size": best["batch_size"]},
        "settings": vars(a),
        "images": len(ds),
        "torch": torch.__version__,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    for row in rows:
        print(f"threads {row['threads']} batch {row['batch_size']}: "
              f"{row['median_s_per_image']:.3f} s/image")  # fmt: skip
    print(f"fastest: threads {best['threads']}, batch size {best['batch_size']}")
    write_json(result, a.json)
    return result


if __name__ == "__main__":
    main()
