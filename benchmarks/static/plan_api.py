"""The vocabulary of the per-kernel plans (cuda_plans.py, triton_plans.py).

A plan says what the SASS cannot: how often each loop runs for a shape, how many blocks or
programs run, and which sectors each one touches. The report checks a plan against the SASS it
describes and fails, naming the kernel, when they disagree.

Loops are given in SASS order (outer loops first, see cfg.py). For each loop the plan gives
``units``: how many times per entry of the loop a warp runs the source loop's body, averaged
over the warps (a warp runs a trip while any of its lanes does: ``warp_units``). The compiler
may unroll a loop k times and peel copies of its body into the enclosing code; ``marker``
names an opcode that occurs once per copy of the body (e.g. STG for an output loop, STS for a
tile load into shared memory). Then

    trips = max(0, units - outside) / inside

where ``inside`` counts the marker in the loop's own code and ``outside`` in the enclosing
loop's own code (or outside all loops): the peeled copies, counted once with the enclosing
code, run ``outside`` of the units and each trip of the loop runs ``inside`` of them. With
``marker=None`` the loop is neither unrolled nor peeled and trips = units.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .counting import Analysis
from .sass import SassError


@dataclass(frozen=True)
class LoopSpec:
    role: str  # what the loop is, for listings and errors
    marker: str | None = None  # opcode once per copy of the body (see the module docstring)


@dataclass
class KernelWork:
    """What one kernel launch does for one shape, per the plan."""

    threads: int  # per block (CUDA) or program (Triton: num_warps * 32)
    blocks: int  # blocks or programs launched
    units: list[float]  # per loop, in the order of the plan's LoopSpecs
    read_bytes: int  # sector-exact bytes read (see traffic.py)
    write_bytes: int  # sector-exact bytes written
    workspace_bytes: int = 0  # scratch memory this kernel writes (and a later step reads)
    detail: dict = field(default_factory=dict)  # bytes per tensor, geometry: for the JSON


@dataclass(frozen=True)
class HostOp:
    """An ATen op a wrapper runs beside the kernels (e.g. a reduction of the workspace)."""

    name: str
    read_bytes: int
    write_bytes: int


def warp_units(per_thread: np.ndarray) -> float:
    """Average over the warps of a block of the largest per-lane count in each warp."""
    per_thread = np.asarray(per_thread, dtype=np.float64)
    if per_thread.size % 32:
        raise ValueError(f"{per_thread.size} threads is not a whole number of warps")
    return float(per_thread.reshape(-1, 32).max(axis=1).mean())


def strided_counts(n: int, first: np.ndarray, stride: int) -> np.ndarray:
    """Trips of ``for (i = first; i < n; i += stride)`` for each thread's first index."""
    first = np.asarray(first, dtype=np.int64)
    return np.where(first < n, -(-(n - first) // stride), 0)


def trips(
    analysis: Analysis, specs: tuple[LoopSpec, ...], units: list[float], who: str
) -> list[float]:
    """Trips per entry of each SASS loop from the plan's units (see the module docstring)."""
    loops = analysis.loops
    if len(loops) != len(specs) or len(units) != len(specs):
        raise SassError(
            f"{who}: the plan describes {len(specs)} loops ({', '.join(s.role for s in specs)}) "
            f"with {len(units)} unit counts, the SASS has {len(loops)}; update the plan\n"
            + analysis.describe()
        )
    out = []
    for lp, spec, u in zip(loops, specs, units):
        if spec.marker is None:
            out.append(float(u))
            continue
        inside = lp.ops.get(spec.marker, 0)
        if inside == 0:
            raise SassError(
                f"{who}: loop {lp.index} ({spec.role}) should hold {spec.marker} once per copy "
                f"of its body, it holds none; update the plan\n" + analysis.describe()
            )
        peeled = 0
        if lp.parent is not None:
            peeled = loops[lp.parent].ops.get(spec.marker, 0)
        else:
            peeled = analysis.top_ops.get(spec.marker, 0)
        out.append(max(0.0, u - peeled) / inside)
    return out


def describe(analysis: Analysis, specs: tuple[LoopSpec, ...], who: str) -> str:
    """The loops of a kernel's SASS next to the plan's names for them."""
    lines = [
        f"{who}: {analysis.top_instrs} instructions outside loops, {analysis.cold_instrs} cold"
    ]
    for k, lp in enumerate(analysis.loops):
        role = specs[k].role if k < len(specs) else "NOT IN THE PLAN"
        marker = f", marker {specs[k].marker}" if k < len(specs) and specs[k].marker else ""
        lines.append(f"  {lp.describe()}  <- {role}{marker}")
    for spec in specs[len(analysis.loops) :]:
        lines.append(f"  (plan loop '{spec.role}' has no SASS loop)")
    return "\n".join(lines)
