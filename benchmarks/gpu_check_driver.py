"""Small GPU runs of the fused op for ``make gpu-check`` (benchmarks/gpu_check.py), one case per
process so that compute-sanitizer can wrap the smoke case on its own.

    python benchmarks/gpu_check_driver.py smoke     # CUDA kernels: fwd + bwd, both layouts,
                                                    # fp32 + bf16, a stride-0 dy; vs the reference
    python benchmarks/gpu_check_driver.py stream    # the same on a non-default stream, bitwise
    python benchmarks/gpu_check_driver.py device1   # tensors on cuda:1 (current device cuda:0)
    python benchmarks/gpu_check_driver.py smoke --device cpu   # the smoke checks on the CPU kernels

Shapes are small and cut every tile size unevenly (C=40, H=19, W=37). Exit status 1 on any
mismatch, with the case named on stdout.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import lgf_ops  # noqa: E402
from lgf_ops.reference import lgf_fused_reference  # noqa: E402

SHAPE = (2, 40, 19, 37)
TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2}  # of max|err| / (1 + max|expected|)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def make_inputs(dtype, layout, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    N, C, H, W = SHAPE
    pdt = torch.float32  # fp32 parameters for bf16 x (the AMP convention)

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dt)

    x = rnd(N, C, H, W).contiguous(memory_format=LAYOUTS[layout])
    return [
        x,
        rnd(C, 1, 3, 3, scale=0.5, dt=pdt),
        rnd(C, scale=0.3, dt=pdt),
        rnd(N, C),
        rnd(6, C, dt=pdt),
        rnd(C, scale=0.5, dt=pdt),
    ]


def run_op(inputs, dy):
    """(y, dx, dweight, dbias, dg, dgate, dgamma) through the registered CUDA kernels."""
    y = torch.ops.lgf.fused_forward(*inputs)
    grads = torch.ops.lgf.fused_backward(dy, *inputs)
    return (y, *grads)


def reference(inputs, dy):
    ins = [t.detach().cpu().double().requires_grad_() for t in inputs]
    y = lgf_fused_reference(*ins)
    y.backward(dy.detach().cpu().double())
    return (y.detach(), *[t.grad for t in ins])


def compare(name, got, want, tol) -> bool:
    ok = True
    for k, (a, b) in enumerate(zip(got, want)):
        a = a.detach().cpu().double()
        err = (a - b).abs().max().item() if b.numel() else 0.0
        bound = tol * (1.0 + (b.abs().max().item() if b.numel() else 0.0))
        if not err <= bound:
            print(f"MISMATCH {name} output {k}: max abs error {err:.3e} > {bound:.3e}")
            ok = False
    return ok


def smoke(device: str = "cuda") -> bool:
    ok = True
    for dtype in (torch.float32, torch.bfloat16):
        for layout in LAYOUTS:
            inputs = make_inputs(dtype, layout, device)
            dys = {
                "dy random": torch.randn_like(inputs[0]),
                "dy stride 0": torch.ones((), device=device, dtype=dtype).expand_as(inputs[0]),
            }
            for dname, dy in dys.items():
                name = f"{dtype} {layout} {dname}"
                good = compare(name, run_op(inputs, dy), reference(inputs, dy), TOL[dtype])
                print(f"{'ok' if good else 'FAILED'}: smoke {name}")
                ok &= good
    if device != "cpu":
        torch.cuda.synchronize()
    return ok


def _bitwise(name, a, b) -> bool:
    same = all(torch.equal(u.cpu(), v.cpu()) for u, v in zip(a, b))
    print(f"{'ok' if same else 'FAILED'}: {name}")
    return same


def _backends():
    return [b for b in ("cuda", "triton") if b in lgf_ops.available_backends()]


def _fused(inputs, dy, backend):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = lgf_ops.lgf_fused(*leaves, backend=backend)
    y.backward(dy)
    return (y.detach(), *[t.grad for t in leaves])


def stream() -> bool:
    """Results on a side stream equal the default stream's, bit for bit."""
    ok = True
    for backend in _backends():
        for layout in LAYOUTS:
            inputs = make_inputs(torch.float32, layout, "cuda")
            dy = torch.randn_like(inputs[0])
            want = _fused(inputs, dy, backend)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                got = _fused(inputs, dy, backend)
            torch.cuda.current_stream().wait_stream(side)
            torch.cuda.synchronize()
            ok &= _bitwise(f"stream {backend} {layout}", got, want)
    return ok


def device1() -> bool:
    """Tensors on cuda:1 while cuda:0 is current give cuda:0's results, bit for bit."""
    if torch.cuda.device_count() < 2:
        print("skipped: device1 needs two GPUs")
        return True
    ok = True
    torch.cuda.set_device(0)
    for backend in _backends():
        for layout in LAYOUTS:
            inputs = make_inputs(torch.float32, layout, "cuda:0")
            dy = torch.randn_like(inputs[0])
            want = _fused(inputs, dy, backend)
            got = _fused([t.to("cuda:1") for t in inputs], dy.to("cuda:1"), backend)
            ok &= all(t.device == torch.device("cuda:1") for t in got)
            ok &= _bitwise(f"cuda:1 {backend} {layout}", got, want)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("case", choices=("smoke", "stream", "device1"))
    p.add_argument("--device", default="cuda", help="smoke only: cpu checks the CPU kernels")
    args = p.parse_args(argv)
    if args.device == "cpu":
        if args.case != "smoke":
            p.error("--device cpu is for the smoke case")
        ok = smoke("cpu")
        print("PASSED" if ok else "FAILED")
        return 0 if ok else 1
    if not torch.cuda.is_available():
        print("no CUDA GPU visible")
        return 1
    if "cuda" not in lgf_ops.available_backends():
        print(f"the extension has no CUDA kernels: {lgf_ops.available_backends()}")
        return 1
    ok = {"smoke": smoke, "stream": stream, "device1": device1}[args.case]()
    print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
