"""Control flow of a SASS function: basic blocks, dominators, natural loops.

Blocks are cut at branch targets and after every branch, EXIT and RET; a CALL does not end a
block (the callee returns to the next instruction), except a CALL whose target never reaches a
RET, which sm_80 code uses as a jump (``@P0 CALL.REL.NOINC <continuation>`` leaves a loop).
Loops are the natural loops of the back edges (a branch to a block that dominates it); loops
that share a header are one loop; a backward branch to a block that does not dominate it (an
irreducible loop) is refused. Loops are numbered by the address of their header, so an outer
loop comes before the loops it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .sass import BRANCHES, INDIRECT, TERMINATORS, Instr, SassError, SassFunction


@dataclass
class Block:
    start: int  # index of the first instruction
    end: int  # index one past the last instruction
    succs: list[int] = field(default_factory=list)  # successor block ids
    preds: list[int] = field(default_factory=list)


def _jump_calls(fn: SassFunction) -> set[int]:
    """Addresses of the CALLs whose target reaches no RET (following branches, stepping over
    calls): those calls never return, they jump."""
    ins = fn.instrs
    returns: dict[int, bool] = {}

    def reaches_ret(start: int) -> bool:
        seen, todo = {start}, [start]
        while todo:
            k = todo.pop()
            i = ins[k]
            if i.op == "RET":
                return True
            nxt = []
            if i.op in BRANCHES:
                nxt.append(fn.index_of(i.target))
                if i.conditional and k + 1 < len(ins):
                    nxt.append(k + 1)
            elif i.op in TERMINATORS:
                if i.conditional and k + 1 < len(ins):
                    nxt.append(k + 1)
            elif k + 1 < len(ins):
                nxt.append(k + 1)
            for n in nxt:
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        return False

    out = set()
    for i in ins:
        if i.op == "CALL":
            if i.target not in returns:
                returns[i.target] = reaches_ret(fn.index_of(i.target))
            if not returns[i.target]:
                out.add(i.addr)
    return out


@dataclass
class Loop:
    header: int  # block id
    latches: list[int]
    body: frozenset[int]  # block ids, header included
    parent: int | None = None  # index of the enclosing loop in Cfg.loops
    depth: int = 0


class Cfg:
    """Blocks reachable from an entry instruction; with_loops: also dominators and loops.

    sm_80 code leaves loops with ``@P0 CALL.REL.NOINC <continuation>``: a CALL whose target
    never reaches a RET is a jump here, not a call.
    """

    def __init__(self, fn: SassFunction, entry_addr: int | None = None, with_loops: bool = True):
        self.fn = fn
        self.blocks: list[Block] = []
        self._block_at: dict[int, int] = {}  # first instruction index -> block id
        self.jump_calls = _jump_calls(fn)
        entry = 0 if entry_addr is None else fn.index_of(entry_addr)
        self._build(entry)
        self.entry = self._block_at[entry]
        self.reachable = self._reach(self.entry)
        self.idom = self._dominators() if with_loops else {}
        self.loops = self._loops() if with_loops else []

    def is_jump(self, ins: Instr) -> bool:
        return ins.op in BRANCHES or (ins.op == "CALL" and ins.addr in self.jump_calls)

    def is_call(self, ins: Instr) -> bool:
        """A call of a subroutine that returns."""
        return ins.op == "CALL" and ins.addr not in self.jump_calls

    # -- construction
    def _build(self, entry: int) -> None:
        ins = self.fn.instrs
        for i in ins:
            if i.op in INDIRECT:
                raise SassError(f"{self.fn.name} ({self.fn.arch}): indirect branch '{i}'")
        leaders = {entry}
        for k, i in enumerate(ins):
            if self.is_jump(i):
                leaders.add(self.fn.index_of(i.target))
            if (self.is_jump(i) or i.op in TERMINATORS) and k + 1 < len(ins):
                leaders.add(k + 1)
        starts = sorted(leaders)
        for b, s in enumerate(starts):
            e = starts[b + 1] if b + 1 < len(starts) else len(ins)
            self._block_at[s] = b
            self.blocks.append(Block(s, e))
        for b, blk in enumerate(self.blocks):
            last = ins[blk.end - 1]
            falls = blk.end < len(ins)
            if self.is_jump(last):
                blk.succs.append(self._block_at[self.fn.index_of(last.target)])
                falls = falls and last.conditional
            elif last.op in TERMINATORS:
                falls = falls and last.conditional
            if falls:
                blk.succs.append(self._block_at[blk.end])
            blk.succs = list(dict.fromkeys(blk.succs))
        for b, blk in enumerate(self.blocks):
            for s in blk.succs:
                self.blocks[s].preds.append(b)

    def _reach(self, start: int) -> set[int]:
        seen, todo = {start}, [start]
        while todo:
            for s in self.blocks[todo.pop()].succs:
                if s not in seen:
                    seen.add(s)
                    todo.append(s)
        return seen

    def _rpo(self) -> list[int]:
        order, seen = [], set()

        def visit(b: int) -> None:  # iterative DFS keeps deep listings off the Python stack
            stack = [(b, iter(self.blocks[b].succs))]
            seen.add(b)
            while stack:
                node, it = stack[-1]
                nxt = next((s for s in it if s not in seen), None)
                if nxt is None:
                    order.append(node)
                    stack.pop()
                else:
                    seen.add(nxt)
                    stack.append((nxt, iter(self.blocks[nxt].succs)))

        visit(self.entry)
        return order[::-1]

    def _dominators(self) -> dict[int, int]:
        """Immediate dominators (Cooper, Harvey and Kennedy's iterative algorithm)."""
        rpo = self._rpo()
        pos = {b: k for k, b in enumerate(rpo)}
        idom = {self.entry: self.entry}

        def meet(a: int, b: int) -> int:
            while a != b:
                while pos[a] > pos[b]:
                    a = idom[a]
                while pos[b] > pos[a]:
                    b = idom[b]
            return a

        changed = True
        while changed:
            changed = False
            for b in rpo[1:]:
                preds = [p for p in self.blocks[b].preds if p in idom]
                new = preds[0]
                for p in preds[1:]:
                    new = meet(p, new)
                if idom.get(b) != new:
                    idom[b] = new
                    changed = True
        return idom

    def dominates(self, a: int, b: int) -> bool:
        while True:
            if a == b:
                return True
            if b == self.entry:
                return False
            b = self.idom[b]

    def _loops(self) -> list[Loop]:
        by_header: dict[int, list[int]] = {}
        for b in sorted(self.reachable):
            for s in self.blocks[b].succs:
                if self.blocks[s].start <= self.blocks[b].start:  # a backward branch
                    if not self.dominates(s, b):
                        raise SassError(
                            f"{self.fn.name} ({self.fn.arch}): irreducible loop, branch at "
                            f"{self.fn.instrs[self.blocks[b].end - 1].addr:#x} to a block that "
                            "does not dominate it"
                        )
                    by_header.setdefault(s, []).append(b)
        loops = []
        for h in sorted(by_header, key=lambda blk: self.blocks[blk].start):
            body, todo = {h}, [t for t in by_header[h] if t != h]
            body.update(todo)
            while todo:
                for p in self.blocks[todo.pop()].preds:
                    if p not in body and p in self.reachable:
                        body.add(p)
                        todo.append(p)
            loops.append(Loop(h, by_header[h], frozenset(body)))
        for k, lp in enumerate(loops):
            outer = [j for j, o in enumerate(loops) if j != k and lp.body < o.body]
            if outer:
                lp.parent = min(outer, key=lambda j: len(loops[j].body))
        for lp in loops:
            p = lp.parent
            while p is not None:
                lp.depth += 1
                p = loops[p].parent
        return loops

    # -- queries
    def instrs(self, b: int) -> list[Instr]:
        blk = self.blocks[b]
        return self.fn.instrs[blk.start : blk.end]

    def innermost_loop(self, b: int) -> int | None:
        inside = [k for k, lp in enumerate(self.loops) if b in lp.body]
        return max(inside, key=lambda k: self.loops[k].depth) if inside else None

    def exit_blocks(self) -> list[int]:
        ins = self.fn.instrs
        return [
            b
            for b in self.reachable
            if ins[self.blocks[b].end - 1].op == "EXIT"
            and not ins[self.blocks[b].end - 1].conditional
        ]

    def unconditional(self, b: int) -> bool:
        """True when every iteration of b's innermost loop (or every run, outside loops) runs b."""
        k = self.innermost_loop(b)
        sinks = self.loops[k].latches if k is not None else self.exit_blocks()
        return bool(sinks) and all(self.dominates(b, s) for s in sinks)


def callee_length(fn: SassFunction, addr: int) -> int:
    """Instructions of the subroutine at addr that its entry reaches (RET ends a path)."""
    cfg = Cfg(fn, addr, with_loops=False)
    return sum(len(cfg.instrs(b)) for b in cfg.reachable)
