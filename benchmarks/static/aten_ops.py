"""Counting the ATen ops a host wrapper or launcher runs, and which of them launch a kernel.

``AtenOpCounter`` is a TorchDispatchMode. It records every op that reaches it with the bytes of
its tensor inputs and outputs. An op launches a GPU kernel unless it only allocates (empty*) or
all its outputs alias an input (views, and conversions that return the input unchanged);
ops that write into an argument (in place, out=) launch. Ops
of other namespaces (the lgf kernels themselves) are not ATen launches; with ``enter_custom``
the counter also follows into a C++ custom op (running its CPU kernel with the counter active),
so the ATen ops that a C++ wrapper calls are seen too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ALLOCATIONS = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided")


@dataclass(frozen=True)
class AtenOp:
    name: str  # e.g. "aten.sum.dim_IntList"
    launches: bool
    read_bytes: int  # tensor inputs
    write_bytes: int  # tensor outputs that do not alias an input


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class AtenOpCounter(TorchDispatchMode):
    def __init__(self, enter_custom: bool = False):
        super().__init__()
        self.ops: list[AtenOp] = []
        self.custom: list[str] = []  # non-aten ops seen (the kernels' own ops)
        self.enter_custom = enter_custom

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace not in ("aten", "prims"):
            self.custom.append(str(func))
            if self.enter_custom:
                keys = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
                with self:
                    return func.redispatch(keys, *args, **kwargs)
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        ins = _tensors((args, kwargs))
        outs = _tensors(out)
        fresh = [o for o in outs if not any(torch._C._is_alias_of(o, i) for i in ins)]
        base = func.name().split("::")[-1].split(".")[0]
        if func._schema.is_mutable:  # in place or out=: writes into an input
            fresh = outs
        launches = bool(fresh) and base not in ALLOCATIONS
        self.ops.append(
            AtenOp(
                str(func),
                launches,
                sum(_nbytes(t) for t in ins) if launches else 0,
                sum(_nbytes(t) for t in fresh) if launches else 0,
            )
        )
        return out

    @property
    def launching(self) -> list[AtenOp]:
        return [op for op in self.ops if op.launches]
