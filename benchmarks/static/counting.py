"""Steady-state instruction counts of a SASS function (what ``instructions_per_thread`` returns).

On the blocks and loops of cfg.py:
- Every block reachable from the entry is counted once per execution of the innermost loop
  that holds it, i.e. its count is multiplied by the trip counts of all loops around it. Both
  arms of an ``if`` count (an upper bound: a warp that diverges issues both anyway); predicated
  instructions count whether or not their predicate is true (they are issued either way).
- A CALL on a conditional path (its block does not dominate every latch of its innermost loop,
  or, outside loops, every unpredicated EXIT) is a slow path that the compiler outlined:
  division and square-root fallbacks, 64-bit division with operands beyond 32 bits. Those
  blocks are not counted. A CALL on the unconditional path is counted with its callee
  (every instruction the callee reaches before RET).
- Code reached only through CALL (callees) or after the last EXIT (the ``BRA self`` padding)
  is not part of the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cfg import Cfg, callee_length
from .sass import SassError, SassFunction


@dataclass
class LoopInfo:
    """One loop as the plans see it: its place and what its own blocks hold."""

    index: int
    first: int  # address of the header's first instruction
    last: int  # address of the last latch branch
    depth: int
    parent: int | None
    own_instrs: int  # instructions in this loop's blocks outside inner loops (cold ones excluded)
    ops: dict[str, int]  # counts of each opcode (without modifiers) among them

    def describe(self) -> str:
        ops = " ".join(f"{k}={self.ops[k]}" for k in sorted(_TRACKED_OPS) if self.ops.get(k))
        return (
            f"loop {self.index}: {self.first:#06x}-{self.last:#06x} depth {self.depth} "
            f"parent {self.parent} own {self.own_instrs} instr [{ops}]"
        )


_TRACKED_OPS = ("LDG", "STG", "LDS", "STS", "LDL", "STL", "BAR", "SHFL", "LDGSTS", "CALL")


@dataclass
class Analysis:
    """A function's loops and its per-region instruction counts, ready for trip counts."""

    fn: SassFunction
    cfg: Cfg
    loops: list[LoopInfo]
    top_instrs: int  # instructions outside every loop (cold ones excluded)
    top_ops: dict[str, int]  # opcode counts among them
    cold_instrs: int  # instructions of blocks skipped as slow paths
    hot_calls: list[tuple[int, int]]  # (call address, callee length) counted with their callee

    def describe(self) -> str:
        lines = [f"{self.fn.name} ({self.fn.arch}): {self.top_instrs} instr outside loops"]
        lines += ["  " + lp.describe() for lp in self.loops]
        return "\n".join(lines)

    def instructions_per_thread(self, trips: list[float]) -> float:
        """Dynamic instructions one thread issues, given each loop's trips per entry."""
        if len(trips) != len(self.loops):
            raise SassError(
                f"{self.fn.name} ({self.fn.arch}): {len(self.loops)} loops in the SASS, "
                f"{len(trips)} trip counts given\n{self.describe()}"
            )
        total = float(self.top_instrs)
        for lp in self.loops:
            weight, k = 1.0, lp.index
            while k is not None:
                weight *= trips[k]
                k = self.loops[k].parent
            total += weight * lp.own_instrs
        return total


def analyse(fn: SassFunction) -> Analysis:
    cfg = Cfg(fn)
    own = {k: 0 for k in range(len(cfg.loops))}
    ops: dict[int, dict[str, int]] = {k: {} for k in range(len(cfg.loops))}
    top = cold = 0
    hot_calls: list[tuple[int, int]] = []
    top_ops: dict[str, int] = {}
    for b in sorted(cfg.reachable):
        body = cfg.instrs(b)
        calls = [i for i in body if cfg.is_call(i)]
        if calls and (not cfg.unconditional(b) or any(c.conditional for c in calls)):
            cold += len(body)
            continue
        n = len(body)
        for c in calls:
            length = callee_length(fn, c.target)
            hot_calls.append((c.addr, length))
            n += length
        k = cfg.innermost_loop(b)
        counts = ops[k] if k is not None else top_ops
        for i in body:
            counts[i.op] = counts.get(i.op, 0) + 1
        if k is None:
            top += n
        else:
            own[k] += n
    loops = [
        LoopInfo(
            k,
            fn.instrs[cfg.blocks[lp.header].start].addr,
            max(fn.instrs[cfg.blocks[t].end - 1].addr for t in lp.latches),
            lp.depth,
            lp.parent,
            own[k],
            ops[k],
        )
        for k, lp in enumerate(cfg.loops)
    ]
    return Analysis(fn, cfg, loops, top, top_ops, cold, hot_calls)
