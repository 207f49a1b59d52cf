"""The GPUs of the static report: peak rates, per-SM limits and theoretical occupancy.

Every number the estimates use is in GPUS or ARCH_LIMITS, with where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchLimits:
    """Per-SM limits of one compute capability (CUDA C++ Programming Guide, table "Technical
    Specifications per Compute Capability"; occupancy rules as in the CUDA occupancy calculator)."""

    name: str
    max_warps: int  # resident warps per SM
    max_blocks: int  # resident blocks per SM
    registers: int  # 32-bit registers per SM
    reg_alloc_unit: int  # registers are allocated per warp in units of this many
    max_regs_per_thread: int
    smem_per_sm: int  # bytes, largest shared-memory carve-out
    smem_alloc_unit: int  # bytes
    reserved_smem_per_block: int  # bytes the driver reserves per block (sm_80+: 1 KB)
    # sm_90 cubins already declare the reserved 1 KB inside each kernel's static shared memory
    # (the .nv.shared section of a kernel is 1 KB larger than in the sm_80 cubin of the same
    # kernel), so it is not added a second time there.
    reserved_in_static: bool


SM80 = ArchLimits("sm_80", 64, 32, 65536, 256, 255, 164 * 1024, 128, 1024, False)
SM90 = ArchLimits("sm_90", 64, 32, 65536, 256, 255, 228 * 1024, 128, 1024, True)
ARCH_LIMITS = {"sm_80": SM80, "sm_90": SM90}


@dataclass(frozen=True)
class Gpu:
    name: str
    arch: str  # the SASS target whose code runs on it
    sms: int
    clock_hz: float  # clock used for the issue rate
    bandwidth: float  # peak DRAM bandwidth, bytes/s
    source: str

    @property
    def warp_instr_per_s(self) -> float:
        """Peak issue rate: one warp-instruction per scheduler per clock, 4 schedulers per SM."""
        return self.sms * 4 * self.clock_hz


GPUS = {
    "H100": Gpu(
        "H100",
        "sm_90",
        132,
        1.755e9,
        3.35e12,
        "H100 SXM5 80GB: 132 SMs and 3.35 TB/s HBM3 (NVIDIA H100 datasheet); 1.755 GHz is the "
        "sustained clock issue 13 budgets with (the datasheet's 67 TFLOPS FP32 implies a 1.98 GHz "
        "maximum boost, so issue times here are on the safe side)",
    ),
    # Not in the default report; gpu_check.py uses it to compare with an H200 it runs on.
    "H200": Gpu(
        "H200",
        "sm_90",
        132,
        1.755e9,
        4.8e12,
        "H200 SXM 141GB: the H100's GH100 chip (132 SMs, same clocks as above) with 4.8 TB/s "
        "HBM3e (NVIDIA H200 datasheet)",
    ),
    "A100": Gpu(
        "A100",
        "sm_80",
        108,
        1.41e9,
        2.039e12,
        "A100 SXM4 80GB: 108 SMs, 1.41 GHz boost clock, 2.039 TB/s HBM2e (NVIDIA A100 datasheet "
        "and Ampere architecture whitepaper)",
    ),
}


def _round_up(v: int, unit: int) -> int:
    return -(-v // unit) * unit


def occupancy(arch: str, regs: int, smem_bytes: int, threads: int) -> tuple[float, str]:
    """Theoretical occupancy (resident warps / max warps) and the limit that sets it."""
    lim = ARCH_LIMITS[arch]
    if threads <= 0 or threads % 32:
        raise ValueError(f"threads per block must be a positive multiple of 32, got {threads}")
    if regs > lim.max_regs_per_thread:
        raise ValueError(
            f"{regs} registers per thread exceed {lim.name}'s {lim.max_regs_per_thread}"
        )
    warps = threads // 32
    by = {"threads": lim.max_warps // warps, "blocks": lim.max_blocks}
    if regs > 0:
        per_warp = _round_up(regs * 32, lim.reg_alloc_unit)
        by["registers"] = (lim.registers // per_warp) // warps
    smem = smem_bytes + (0 if lim.reserved_in_static else lim.reserved_smem_per_block)
    if smem > 0:
        by["shared memory"] = lim.smem_per_sm // _round_up(smem, lim.smem_alloc_unit)
    limiter = min(by, key=lambda k: by[k])
    blocks = by[limiter]
    if blocks < 1:
        raise ValueError(f"a block of {threads} threads does not fit on an SM of {lim.name}: {by}")
    return blocks * warps / lim.max_warps, limiter


def memory_us(gpu: Gpu, nbytes: float) -> float:
    return nbytes / gpu.bandwidth * 1e6


def issue_us(gpu: Gpu, warp_instructions: float) -> float:
    return warp_instructions / gpu.warp_instr_per_s * 1e6


def table() -> str:
    """The constants as printed by ``gpu_static.py --gpus``."""
    lines = []
    for g in GPUS.values():
        lim = ARCH_LIMITS[g.arch]
        lines.append(
            f"{g.name}: {g.arch}, {g.sms} SMs x 4 schedulers x {g.clock_hz / 1e9:.3f} GHz = "
            f"{g.warp_instr_per_s:.3g} warp-instr/s, {g.bandwidth / 1e12:.3f} TB/s; per SM "
            f"{lim.max_warps} warps, {lim.max_blocks} blocks, {lim.registers} registers, "
            f"{lim.smem_per_sm // 1024} KB shared\n  source: {g.source}"
        )
    return "\n".join(lines)
