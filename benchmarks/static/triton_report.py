"""Records of the Triton kernels: launches captured from the real launchers (triton_capture.py),
compiled for sm_80 / sm_90 with the launcher's specialisation, read with cuobjdump."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import triton_plans
from .cases import OpCase
from .counting import Analysis, analyse
from .cuobjdump import Resources, dump_cubin_bytes
from .estimate import kernel_estimate, op_record
from .gpus import GPUS
from .plan_api import HostOp, describe
from .triton_capture import Capture, Launch, bind, capture, compile_launch

LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def meta_inputs(shape, dtype: torch.dtype, layout: str) -> list[torch.Tensor]:
    """x, weight, bias, g, gate, gamma on the meta device; parameters in fp32 for fp16/bf16 x
    (the AMP convention), g in x's dtype."""
    N, C, H, W = shape
    pdt = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    x = torch.empty(shape, dtype=dtype, device="meta").contiguous(memory_format=LAYOUTS[layout])
    return [
        x,
        torch.empty(C, 1, 3, 3, dtype=pdt, device="meta"),
        torch.empty(C, dtype=pdt, device="meta"),
        torch.empty(N, C, dtype=dtype, device="meta"),
        torch.empty(6, C, dtype=pdt, device="meta"),
        torch.empty(C, dtype=pdt, device="meta"),
    ]


def capture_op(case: OpCase) -> tuple[Capture, list]:
    """The launcher of the case's direction run on meta tensors: the capture and its inputs."""
    from lgf_ops import triton_launch  # ImportError without triton

    launcher = getattr(triton_launch, triton_plans.OPS[case.direction])
    inputs = meta_inputs(case.shape, case.dtype, case.layout)
    if case.direction == "backward":
        inputs = [torch.empty_like(inputs[0])] + inputs  # dy laid out like x
    return capture(launcher, *inputs), inputs


def scratch_bytes(cap: Capture, inputs: list) -> int:
    """Bytes of the tensors the launcher allocates and passes to its kernels but does not
    return (the workspace)."""
    outs = [
        t for t in torch.utils._pytree.tree_flatten(cap.result)[0] if isinstance(t, torch.Tensor)
    ]
    known = inputs + outs
    seen, total = [], 0
    for launch in cap.launches:
        for a in launch.args:
            if not isinstance(a, torch.Tensor):
                continue
            if any(torch._C._is_alias_of(a, k) for k in known + seen):
                continue
            seen.append(a)
            total += a.untyped_storage().nbytes()
    return total


@dataclass
class Compiled:
    name: str
    arch: str
    threads: int
    dynamic_smem: int
    res: Resources
    analysis: Analysis


_CACHE: dict[tuple, Compiled] = {}


def compiled(launch: Launch, cc: int) -> Compiled:
    b = bind(launch, cc)
    key = (launch.name, cc, repr(b.signature), repr(b.constexprs), repr(b.attrs), repr(b.options))
    if key not in _CACHE:
        k = compile_launch(launch, cc)
        res, sass = dump_cubin_bytes(k.asm["cubin"])
        name = k.metadata.name
        fn = next((f for f in sass if f.name == name), None)
        r = next((r for r in res if r.name == name), None)
        if fn is None or r is None:
            raise RuntimeError(f"cuobjdump found no function {name} in the cubin of {launch.name}")
        _CACHE[key] = Compiled(
            name, f"sm_{cc}", 32 * k.metadata.num_warps, k.metadata.shared, r, analyse(fn)
        )
    return _CACHE[key]


def check_plans() -> None:
    """Every planned kernel must still be a @triton.jit function the launchers of
    lgf_ops.triton_launch import."""
    from lgf_ops import triton_launch

    gone = [k for k in triton_plans.KERNELS if not hasattr(triton_launch, k)]
    if gone:
        raise RuntimeError(
            f"benchmarks/static/triton_plans.py has plans for kernels that the launchers in "
            f"lgf_ops/triton_launch.py do not use: {gone}; remove or rename them"
        )


def _works(case: OpCase, cap: Capture) -> list:
    works = []
    for launch in cap.launches:
        plan = triton_plans.KERNELS.get(launch.name)
        if plan is None:
            raise RuntimeError(
                f"Triton kernel {launch.name} (launched by {triton_plans.OPS[case.direction]}) "
                "has no plan in benchmarks/static/triton_plans.py KERNELS: add one"
            )
        works.append((launch, plan, plan.work(launch)))
    return works


def op_records(case: OpCase, gpus) -> list[dict]:
    """Records of one op call (one per GPU): capture, compile per target, estimate."""
    cap, inputs = capture_op(case)
    works = _works(case, cap)
    host = [HostOp(op.name, op.read_bytes, op.write_bytes) for op in cap.aten_launches]
    x = inputs[1] if case.direction == "backward" else inputs[0]
    launches = [
        {"kernel": la.name, "programs": la.programs(), "num_warps": la.kwargs.get("num_warps")}
        for la in cap.launches
    ]
    out = []
    for gname in gpus:
        gpu = GPUS[gname]
        cc = int(gpu.arch.split("_")[1])
        ests = []
        for launch, plan, work in works:
            c = compiled(launch, cc)
            if c.threads != work.threads:
                raise RuntimeError(
                    f"{launch.name}: compiled for {c.threads} threads, the plan says {work.threads}"
                )
            ests.append(
                kernel_estimate(
                    launch.name, gpu.arch, c.analysis, c.res, plan.loops, work, c.dynamic_smem
                )
            )
        rec = op_record(case.key("triton"), gpu, x.numel(), x.element_size(), ests, host)
        rec["workspace_bytes"] = scratch_bytes(cap, inputs)
        rec["launch"] = launches
        out.append(rec)
    return out


def loop_listing() -> list[str]:
    """describe() of every Triton kernel variant compiled so far."""
    out = []
    for key, c in _CACHE.items():
        plan = triton_plans.KERNELS[key[0]]
        out.append(describe(c.analysis, plan.loops, f"{c.name} {c.arch} ({c.threads} threads)"))
    return out
