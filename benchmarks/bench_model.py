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
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lgf.counting import model_complexity  # noqa: E402
from lgf.models import build_retinanet  # noqa: E402
from lgf.utils.atomic_write import write_json  # noqa: E402

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


def parse_args(argv=None):
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
    return p.parse_args(argv)


def build_variants(args, device):
    """{variant: (model, optimizer)} and {variant: row with params, GFLOPs, empty timings}."""
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
        models[name] = (m, torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9))
        cx = model_complexity(m, img_size=args.img_size)
        rows[name] = {"params_M": cx["params"] / 1e6, "gflops": cx["flops"] / 1e9}
        rows[name].update(step=[], infer=[])
    return models, rows


def time_rounds(models, rows, images, targets, reps, device):
    """One warm-up, then `reps` rounds, each timing every variant once (interleaved)."""

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

    for m, opt in models.values():
        step(m, opt)
        infer(m)
    for _ in range(reps):
        for name, (m, opt) in models.items():
            rows[name]["step"].append(timed(lambda: step(m, opt), device))
            rows[name]["infer"].append(timed(lambda: infer(m), device))


def summarize(rows):
    """Medians and overheads against the baseline, one dict per variant."""
    bst = statistics.median(rows["baseline"]["step"])
    binf = statistics.median(rows["baseline"]["infer"])
    out = []
    for name, r in rows.items():
        st, inf = statistics.median(r["step"]), statistics.median(r["infer"])
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
    return out


def print_table(args, out):
    print(
        f"\nRetinaNet {args.backbone}, block at {args.insert_level}, "
        f"{args.img_size}x{args.img_size}, {args.device}, {torch.get_num_threads()} threads, "
        f"train batch {args.batch_size}, {args.reps} interleaved rounds, medians"
    )
    head = (
        f"{'variant':18s} {'params M':>9s} {'GFLOPs':>8s} {'step ms':>9s} {'vs base':>8s} "
        f"{'infer ms':>9s} {'vs base':>8s}"
    )
    print(head)
    print("-" * len(head))
    for r in out:
        print(
            f"{r['variant']:18s} {r['params_M']:9.2f} {r['gflops']:8.1f} {r['step_ms']:9.0f} "
            f"{100 * r['step_overhead']:+7.1f}% {r['infer_ms']:9.0f} "
            f"{100 * r['infer_overhead']:+7.1f}%"
        )
    print(
        "GFLOPs: FlopCounterMode on backbone + block + FPN + head for one image "
        "(2 FLOPs per multiply-add)"
    )


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    images, targets = synthetic_batch(
        args.batch_size, args.img_size, device, torch.Generator().manual_seed(0)
    )
    models, rows = build_variants(args, device)
    time_rounds(models, rows, images, targets, args.reps, device)
    out = summarize(rows)
    print_table(args, out)
    path = args.json or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"bench_model_{device.type}.json"
    )
    write_json({"config": vars(args), "rows": out}, path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
