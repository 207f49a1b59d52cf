"""Kernel benchmark of the fused LGF op (docs/design.md §6).

Times forward, backward and forward+backward of each available fused backend against plain
PyTorch (the reference, eager and torch.compile, NCHW and channels_last), same process, same
inputs, variants interleaved round by round so that machine drift hits all of them alike.
Reports median ms, the speed-up of the fused op over the best plain-PyTorch variant, effective
GB/s (bytes of x read + y written, over the forward time) against a measured clone() bandwidth,
and the memory a training step holds for backward (bytes of saved tensors; on CUDA also the
peak allocated during the step).

    python benchmarks/bench_op.py                      # CPU, N=2 C=512 H=W=80 fp32
    python benchmarks/bench_op.py --device cuda --dtype float16
    python benchmarks/bench_op.py --backend triton --device cuda
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lgf_ops  # noqa: E402
from lgf_ops.reference import lgf_fused_reference  # noqa: E402


def make_inputs(N, C, H, W, dtype, device, channels_last, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=gen).to(device, dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pdt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    weight = (torch.randn(C, 1, 3, 3, generator=gen) * 0.3).to(device, pdt)
    bias = (torch.randn(C, generator=gen) * 0.1).to(device, pdt)
    g = torch.randn(N, C, generator=gen).to(device, dtype)
    gate = (torch.randn(6, C, generator=gen) * 0.5).to(device, pdt)
    gamma = torch.full((C,), 0.1).to(device, pdt)
    return [t.requires_grad_() for t in (x, weight, bias, g, gate, gamma)]


class Timer:
    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end)
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3


def saved_bytes(fn, inputs):
    """Bytes of distinct storages autograd keeps for backward of fn(*inputs)."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(*inputs)
    del y
    return sum(storages.values())


def step_peak_bytes(fn, inputs, device):
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    y = fn(*inputs)
    torch.autograd.grad(y, inputs, torch.ones_like(y))
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def build_variants(args, device, dtype):
    shape = (args.N, args.C, args.H, args.W)
    variants = {}
    for cl in (False, True):
        tag = "channels_last" if cl else "NCHW"
        inputs = make_inputs(*shape, dtype, device, cl)
        if not args.no_plain:
            variants[f"eager {tag}"] = (lgf_fused_reference, inputs, False)
            if not args.no_compile:
                variants[f"compile {tag}"] = (
                    torch.compile(lgf_fused_reference, dynamic=False),
                    inputs,
                    False,
                )
        for backend in args.backends:

            def fused(*a, _b=backend):
                return lgf_ops.lgf_fused(*a, backend=_b)

            variants[f"lgf {backend} {tag}"] = (fused, inputs, True)
    return variants


def measure(args):
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    variants = build_variants(args, device, dtype)
    timer = Timer(device)
    x0 = next(iter(variants.values()))[1][0]
    dy = torch.randn_like(x0)
    state = {}
    for name, (fn, inputs, _) in variants.items():  # warm up (and compile) each variant
        for _ in range(args.warmup):
            y = fn(*inputs)
            torch.autograd.grad(y, inputs, dy)
        state[name] = {"fwd": [], "bwd": [], "full": []}
    clone_ms = []
    for _ in range(args.reps):
        clone_ms.append(timer(lambda: x0.detach().clone()))
        for name, (fn, inputs, _) in variants.items():
            res = state[name]
            with torch.no_grad():
                res["fwd"].append(timer(lambda: fn(*inputs)))
            y = fn(*inputs)
            res["bwd"].append(timer(lambda y=y: torch.autograd.grad(y, inputs, dy)))
            del y
            res["full"].append(timer(lambda: torch.autograd.grad(fn(*inputs), inputs, dy)))
    bytes_xy = 2 * x0.numel() * x0.element_size()
    clone_gbs = bytes_xy / (statistics.median(clone_ms) * 1e-3) / 1e9
    rows = []
    for name, (fn, inputs, fused) in variants.items():
        med = {k: statistics.median(v) for k, v in state[name].items()}
        rows.append(
            {
                "variant": name,
                "fused": fused,
                "fwd_ms": med["fwd"],
                "bwd_ms": med["bwd"],
                "full_ms": med["full"],
                "fwd_GBps": bytes_xy / (med["fwd"] * 1e-3) / 1e9,
                # CPU time per element: forward ms x threads / elements (compute cost, layout-free)
                "fwd_ns_per_elem_thread": med["fwd"]
                * 1e6
                * torch.get_num_threads()
                / max(1, x0.numel()),
                "saved_MB": saved_bytes(fn, inputs) / 2**20,
                "step_peak_MB": (lambda b: None if b is None else b / 2**20)(
                    step_peak_bytes(fn, inputs, device)
                ),
            }
        )
    plain = [r for r in rows if not r["fused"]]
    best = {k: min(r[k] for r in plain) for k in ("fwd_ms", "bwd_ms", "full_ms")} if plain else None
    for r in rows:
        if best:
            r["speedup_fwd"] = best["fwd_ms"] / r["fwd_ms"]
            r["speedup_bwd"] = best["bwd_ms"] / r["bwd_ms"]
            r["speedup_full"] = best["full_ms"] / r["full_ms"]
    return {
        "config": {
            **vars(args),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "input_MB": x0.numel() * x0.element_size() / 2**20,
        },
        "clone_ms": statistics.median(clone_ms),
        "clone_GBps": clone_gbs,
        "best_plain": best,
        "rows": rows,
    }


def print_table(result):
    cfg = result["config"]
    print(
        f"\nlgf_fused on {cfg['device']} {cfg['dtype']}, "
        f"N={cfg['N']} C={cfg['C']} H={cfg['H']} W={cfg['W']}, "
        f"{cfg['threads']} threads, {cfg['reps']} interleaved rounds, medians"
    )
    clone = f"{result['clone_ms']:.2f} ms = {result['clone_GBps']:.1f} GB/s"
    print(f"clone() of x: {clone} (read + write)")
    head = (
        f"{'variant':28s} {'fwd ms':>9s} {'bwd ms':>9s} {'fwd+bwd ms':>11s} {'fwd GB/s':>9s} "
        f"{'x fwd':>6s} {'x bwd':>6s} {'x full':>6s} {'saved MB':>9s}"
    )
    print(head)
    print("-" * len(head))
    for r in result["rows"]:
        sp = [
            f"{r[k]:6.2f}" if k in r else "     -"
            for k in ("speedup_fwd", "speedup_bwd", "speedup_full")
        ]
        print(
            f"{r['variant']:28s} {r['fwd_ms']:9.2f} {r['bwd_ms']:9.2f} {r['full_ms']:11.2f} "
            f"{r['fwd_GBps']:9.1f} {sp[0]} {sp[1]} {sp[2]} {r['saved_MB']:9.1f}"
        )
    print(
        "x fwd / x bwd / x full: speed-up over the best plain-PyTorch variant "
        "(eager or compile, either layout)"
    )
    for r in result["rows"]:
        if r["fused"]:
            per = r["fwd_ns_per_elem_thread"]
            print(f"{r['variant']}: forward {per:.2f} ns per element per thread")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype", default=None, help="float32 (CPU default) | float16 (GPU default) | bfloat16"
    )
    p.add_argument(
        "--backend", default=None, help="fused backend(s), comma separated; default: all that apply"
    )
    p.add_argument("-N", type=int, default=2)
    p.add_argument("-C", type=int, default=512)
    p.add_argument("-H", type=int, default=80)
    p.add_argument("-W", type=int, default=80)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: torch's default)"
    )
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--no-plain", action="store_true", help="time only the fused backends")
    p.add_argument(
        "--json",
        default=None,
        help="output path (default benchmarks/results/bench_op_<device>.json)",
    )
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    device = torch.device(args.device)
    if args.dtype is None:
        args.dtype = "float16" if device.type == "cuda" else "float32"
    avail = lgf_ops.available_backends()
    if args.backend:
        args.backends = [b.strip() for b in args.backend.split(",")]
        missing = [b for b in args.backends if b not in avail]
        if missing:
            p.error(f"backend(s) {missing} not available here; available: {avail}")
    else:
        applicable = {"cpu": ["cpp"], "cuda": ["cuda", "triton"]}.get(device.type, [])
        args.backends = [b for b in applicable if b in avail]
    if not args.backends and args.no_plain:
        p.error("nothing to time")
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = measure(args)
    finally:
        torch.set_num_threads(threads_before)
    print_table(result)
    path = args.json or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"bench_op_{device.type}.json"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
