"""From a kernel's SASS, resources and plan to the numbers of one report record.

Per kernel: dynamic warp-instructions = blocks x warps per block x the instructions one warp
issues (counting.Analysis.instructions_per_thread with the plan's trips: loop bodies times trips,
plus the code outside loops once per block). Per op (all its kernels and host ATen ops):

    instr_per_output = 32 x warp-instructions / numel          (thread-instruction slots)
    issue_us   = warp-instructions / (SMs x 4 schedulers x clock)
    memory_us  = sector-exact bytes / peak bandwidth  (kernels' tiles + host ops' tensors)
    est_us     = max(memory_us, issue_us)
    roofline_us = (x read + y written; backward: x, dy read + dx written) / peak bandwidth

Host ATen ops (parameter conversions, workspace reductions) add their bytes and one launch
each; their instructions are not counted (they touch parameter-sized tensors, or the
workspace once). Launch latency (a few microseconds per launch) is not part of est_us: the
``launches`` column shows it. All of these are static estimates, not measurements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .counting import Analysis
from .cuobjdump import Resources
from .gpus import Gpu, issue_us, memory_us, occupancy
from .plan_api import HostOp, KernelWork, LoopSpec, trips
from .sass import local_store_bytes

SECTOR = 32


@dataclass
class KernelEstimate:
    kernel: str
    target: str
    threads: int
    blocks: int
    regs: int
    spill_bytes: int  # bytes of local-memory stores in the SASS (ptxas' "spill stores")
    stack_bytes: int
    smem_bytes: int  # static (from the binary) + dynamic (Triton)
    occupancy: float
    occupancy_limiter: str
    instr_per_warp: float
    warp_instructions: float
    read_bytes: int
    write_bytes: int
    workspace_bytes: int
    trips: list[float] = field(default_factory=list)
    detail: dict = field(default_factory=dict)


def kernel_estimate(
    name: str,
    target: str,
    analysis: Analysis,
    res: Resources,
    specs: tuple[LoopSpec, ...],
    work: KernelWork,
    dynamic_smem: int = 0,
) -> KernelEstimate:
    who = f"{name} ({target})"
    t = trips(analysis, specs, work.units, who)
    per_warp = analysis.instructions_per_thread(t)
    smem = res.shared + dynamic_smem
    occ, limiter = occupancy(target, res.regs, smem, work.threads)
    return KernelEstimate(
        kernel=name,
        target=target,
        threads=work.threads,
        blocks=work.blocks,
        regs=res.regs,
        spill_bytes=local_store_bytes(analysis.fn),
        stack_bytes=res.stack,
        smem_bytes=smem,
        occupancy=occ,
        occupancy_limiter=limiter,
        instr_per_warp=per_warp,
        warp_instructions=work.blocks * (work.threads // 32) * per_warp,
        read_bytes=work.read_bytes,
        write_bytes=work.write_bytes,
        workspace_bytes=work.workspace_bytes,
        trips=t,
        detail=work.detail,
    )


def _sector_bytes(n: int) -> int:
    return -(-n // SECTOR) * SECTOR


def op_record(
    key: dict,
    gpu: Gpu,
    numel: int,
    itemsize: int,
    kernels: list[KernelEstimate],
    host: list[HostOp],
) -> dict:
    """One report record; key holds backend, direction, dtype, layout, shape."""
    warp_instr = sum(k.warp_instructions for k in kernels)
    mem = sum(k.read_bytes + k.write_bytes for k in kernels)
    mem += sum(_sector_bytes(h.read_bytes) + _sector_bytes(h.write_bytes) for h in host)
    mem_us, iss_us = memory_us(gpu, mem), issue_us(gpu, warp_instr)
    tensors = 2 if key["direction"] == "forward" else 3
    roof = tensors * numel * itemsize
    return {
        **key,
        "gpu": gpu.name,
        "regs": max(k.regs for k in kernels),
        "spill_bytes": max(k.spill_bytes for k in kernels),
        "occupancy": min(k.occupancy for k in kernels),
        "instr_per_output": 32 * warp_instr / numel,
        "launches": len(kernels) + len(host),
        "workspace_bytes": sum(k.workspace_bytes for k in kernels),
        "memory_us": mem_us,
        "issue_us": iss_us,
        "est_us": max(mem_us, iss_us),
        "roofline_us": memory_us(gpu, roof),
        # extras
        "kernel": "+".join(k.kernel for k in kernels),
        "target": kernels[0].target,
        "smem_bytes": max(k.smem_bytes for k in kernels),
        "memory_bytes": mem,
        "roofline_bytes": roof,
        "host_ops": [h.name for h in host],
        "kernels": [asdict(k) for k in kernels],
        "estimate": "static estimate from SASS and plans, not a measurement",
    }
