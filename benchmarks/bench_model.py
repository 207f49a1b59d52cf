"""Model benchmark: RetinaNet step time and inference latency with and without the LGF block.

Builds the same RetinaNet (random weights) as a baseline, with the fused LGF block and with the
LGF block on the plain-PyTorch reference backend, then times, interleaved round by round:
  - a training step (forward with targets, backward, SGD step) on a batch of images, and
  - inference latency of one image (eval mode, no grad),
and reports medians, the overhead of the block relative to the baseline, params and FLOPs
(the fused op registers a FLOP formula, so FlopCounterMode sees it).

    python benchmarks/bench_model.py                       # CPU, resnet50, 640x640
    python benchmarks/bench_model.py --device cuda --batch-size 4
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lgf.models import build_retinanet, model_complexity  # noqa: E402

VARIANTS = {
    "baseline": dict(block=None),
    "lgf (fused)": dict(block="lgf", block_kwargs={"backend": "auto"}),
    "lgf (reference)": dict(block="lgf", block_kwargs={"backend": "reference"}),
}


def synthetic_batch(n, size, device, gen):
    images = [torch.rand(3, size, size, generator=gen).to(device) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(8, 2, generator=gen) * (size - 40)
        wh = 8 + torch.rand(8, 2, generator=gen) * 24
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1).to(device),
                "labels": torch.randint(1, 3, (8,), generator=gen).to(device),
            }
        )
    return images, targets


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--insert-level", default="C3")
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    images, targets = synthetic_batch(args.batch_size, args.img_size, device, gen)
    models, rows = {}, {}
    for name, kw in VARIANTS.items():
        torch.manual_seed(0)
        m = build_retinanet(
            args.backbone,
            insert_level=args.insert_level,
            num_classes=3,
            min_size=args.img_size,
            max_size=args.img_size,
            **kw,
        ).to(device)
        opt = torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9)
        models[name] = (m, opt)
        cx = model_complexity(m, img_size=args.img_size)
        rows[name] = {
            "params_M": cx["params"] / 1e6,
            "gflops": cx["flops"] / 1e9,
            "step": [],
            "infer": [],
        }

    def step(m, opt):
        m.train()
        loss = sum(m(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer(m):
        m.eval()
        with torch.no_grad():
            m(images[:1])

    for name, (m, opt) in models.items():  # warm-up
        step(m, opt)
        infer(m)
    for _ in range(args.reps):
        for name, (m, opt) in models.items():
            rows[name]["step"].append(timed(lambda: step(m, opt), device))
            rows[name]["infer"].append(timed(lambda: infer(m), device))
    base = rows["baseline"]
    print(
        f"\nRetinaNet {args.backbone}, block at {args.insert_level}, {args.img_size}x{args.img_size}, "
        f"{args.device}, {torch.get_num_threads()} threads, train batch {args.batch_size}, "
        f"{args.reps} interleaved rounds, medians"
    )
    head = f"{'variant':18s} {'params M':>9s} {'GFLOPs':>8s} {'step ms':>9s} {'vs base':>8s} {'infer ms':>9s} {'vs base':>8s}"
    print(head)
    print("-" * len(head))
    out = []
    for name, r in rows.items():
        st, inf = statistics.median(r["step"]), statistics.median(r["infer"])
        bst, binf = statistics.median(base["step"]), statistics.median(base["infer"])
        print(
            f"{name:18s} {r['params_M']:9.2f} {r['gflops']:8.1f} {st:9.0f} {100 * (st / bst - 1):+7.1f}% "
            f"{inf:9.0f} {100 * (inf / binf - 1):+7.1f}%"
        )
        out.append(
            {
                "variant": name,
                "params_M": r["params_M"],
                "gflops": r["gflops"],
                "step_ms": st,
                "infer_ms": inf,
                "step_overhead": st / bst - 1,
                "infer_overhead": inf / binf - 1,
            }
        )
    print(
        "GFLOPs: FlopCounterMode on backbone + block + FPN + head for one image (2 FLOPs per multiply-add)"
    )
    path = args.json or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"bench_model_{device.type}.json"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"config": vars(args), "rows": out}, f, indent=2)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
