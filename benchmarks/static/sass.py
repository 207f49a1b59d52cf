"""SASS listings as ``cuobjdump -sass`` prints them: functions and their instructions.

cfg.py builds the control flow of a function, counting.py counts its instructions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FUNC_RE = re.compile(r"^\s*Function\s*:\s*(\S+)")
_ARCH_RE = re.compile(r"^\s*code for (sm_\w+)")
_INSTR_RE = re.compile(r"^\s*/\*([0-9a-fA-F]{4,})\*/\s+(.*?)\s*;?\s*(?:/\*.*\*/)?\s*$")
_LABEL_RE = re.compile(r"^\s*(\.L_\w+):")
_TARGET_RE = re.compile(r"(?:`\((\.L_\w+)\)|\b(0x[0-9a-fA-F]+)\b)")
_PRED_RE = re.compile(r"^(@!?U?P[T0-9]+)\s+(.*)$")

BRANCHES = ("BRA", "JMP")
INDIRECT = ("BRX", "JMX")
TERMINATORS = ("EXIT", "RET", "KILL")


class SassError(RuntimeError):
    """The listing has a shape this counter refuses to guess about."""


@dataclass(frozen=True)
class Instr:
    addr: int
    pred: str | None  # "@P0", "@!P1", or None
    opcode: str  # e.g. "LDG.E.CONSTANT"
    operands: str
    target: int | None = None  # branch or call target address

    @property
    def op(self) -> str:
        """The opcode without modifiers (LDG.E.CONSTANT -> LDG)."""
        return self.opcode.split(".")[0]

    @property
    def conditional(self) -> bool:
        """True when the instruction may or may not take effect (predicate, or BRA.DIV-like)."""
        if self.pred is not None and self.pred not in ("@PT", "@UPT"):
            return True
        return self.op == "BRA" and any(m in self.opcode for m in (".DIV", ".CONV"))

    def __str__(self) -> str:
        pred = f"{self.pred} " if self.pred else ""
        return f"/*{self.addr:04x}*/ {pred}{self.opcode} {self.operands}".rstrip()


@dataclass
class SassFunction:
    name: str
    arch: str
    instrs: list[Instr] = field(default_factory=list)

    def index_of(self, addr: int) -> int:
        for i, ins in enumerate(self.instrs):
            if ins.addr == addr:
                return i
        raise SassError(f"{self.name} ({self.arch}): no instruction at address {addr:#x}")


def _split_instr(addr: int, text: str, labels: dict[str, int]) -> Instr:
    pred = None
    m = _PRED_RE.match(text)
    if m:
        pred, text = m.group(1), m.group(2)
    parts = text.split(None, 1)
    opcode = parts[0]
    operands = parts[1] if len(parts) > 1 else ""
    target = None
    op = opcode.split(".")[0]
    if op in BRANCHES or op == "CALL":
        t = _TARGET_RE.search(operands)
        if t is None:
            raise SassError(f"cannot read the target of '{text}' at {addr:#x}")
        target = labels[t.group(1)] if t.group(1) else int(t.group(2), 16)
    return Instr(addr, pred, opcode, operands, target)


def parse_sass(text: str) -> list[SassFunction]:
    """Functions of a ``cuobjdump -sass`` listing (one or several cubins), in listing order."""
    funcs: list[SassFunction] = []
    arch = "unknown"
    raw: list[tuple[SassFunction, list[tuple[int, str]], dict[str, int]]] = []
    pending_labels: list[str] = []
    for line in text.splitlines():
        if m := _ARCH_RE.match(line):
            arch = m.group(1)
            continue
        if m := _FUNC_RE.match(line):
            fn = SassFunction(m.group(1), arch)
            funcs.append(fn)
            raw.append((fn, [], {}))
            pending_labels = []
            continue
        if not raw:
            continue
        if m := _LABEL_RE.match(line):
            pending_labels.append(m.group(1))
            continue
        if m := _INSTR_RE.match(line):
            addr = int(m.group(1), 16)
            body = m.group(2).strip().rstrip(";").strip()
            if not body:
                continue
            for lab in pending_labels:
                raw[-1][2][lab] = addr
            pending_labels = []
            raw[-1][1].append((addr, body))
    for fn, lines, labels in raw:
        fn.instrs = [_split_instr(a, t, labels) for a, t in lines]
    return funcs


_LOCAL_WIDTH = re.compile(r"\.(8|16|32|64|128|U8|S8|U16|S16)\b")


def local_store_bytes(fn: SassFunction) -> int:
    """Bytes stored to local memory by the STL instructions of the listing (static count): with
    no local arrays in the kernel, these are register spills (what ptxas calls spill stores)."""
    total = 0
    for i in fn.instrs:
        if i.op != "STL":
            continue
        m = _LOCAL_WIDTH.search(i.opcode)
        bits = int(re.sub(r"\D", "", m.group(1))) if m else 32
        total += bits // 8
    return total
