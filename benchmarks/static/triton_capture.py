"""Capture the launches of a Triton launcher without a GPU, and compile them for a GPU target.

    cap = capture(lgf_ops.triton_launch.lgf_forward, x, weight, bias, g, gate, gamma)
    for launch in cap.launches:
        kernel = compile_launch(launch, 90)          # sm_90 cubin, the launcher's specialisation
        kernel.asm["cubin"], kernel.metadata.shared, kernel.metadata.num_warps

``capture`` runs the launcher on meta (or CPU) tensors with ``JITFunction.run`` replaced by a
recorder: every ``kernel[grid](*args, **kwargs)`` is recorded (kernel, grid, args, kwargs) and
nothing runs. Triton's interpreter knob is switched on meanwhile, so a launcher that accepts
non-CUDA tensors only under the interpreter accepts them here. The ATen ops the launcher runs
(allocations, the parameter-gradient reduction) are recorded by ``AtenOpCounter``.

``bind`` does what ``JITFunction.run`` does before compiling (triton 3.x, triton/runtime/jit.py):
the kernel's own binder (``create_function_from_signature``) applied to the recorded arguments
gives the specialisation (integers equal to 1 become constexprs, pointers and integers divisible
by 16 get ``tt.divisibility``; meta tensors have data_ptr 0, aligned like CUDA allocations),
and ``_pack_args`` gives the signature, constexprs, attributes and options (num_warps ...).
``compile_launch`` hands that to ``triton.compile`` for ``GPUTarget("cuda", cc, 32)``. No GPU
and no driver are needed. Importing triton with TRITON_INTERPRET=1 makes ``@triton.jit``
build interpreter functions that cannot be compiled; that case is refused with a clear error.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

from .aten_ops import AtenOp, AtenOpCounter


@dataclass
class Launch:
    kernel: JITFunction
    grid: tuple
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.kernel.fn.__name__

    def named_args(self) -> dict[str, Any]:
        """Every kernel parameter by name (defaults applied), plus the launch options."""
        sig = self.kernel.signature
        bound = sig.bind_partial(
            *self.args, **{k: v for k, v in self.kwargs.items() if k in sig.parameters}
        )
        bound.apply_defaults()
        out = dict(bound.arguments)
        out.update({k: v for k, v in self.kwargs.items() if k not in sig.parameters})
        return out

    def programs(self) -> int:
        grid = self.grid(self.named_args()) if callable(self.grid) else self.grid
        total = 1
        for g in grid:
            total *= int(g)
        return total


@dataclass
class Capture:
    launches: list[Launch] = field(default_factory=list)
    aten_ops: list[AtenOp] = field(default_factory=list)
    result: Any = None

    @property
    def aten_launches(self) -> list[AtenOp]:
        return [op for op in self.aten_ops if op.launches]


class InterpreterActive(RuntimeError):
    """triton was imported with TRITON_INTERPRET=1: its kernels cannot be compiled."""


def _check_compilable(kernel) -> None:
    if not isinstance(kernel, JITFunction):
        raise InterpreterActive(
            f"{kernel!r} is not a triton JITFunction (was TRITON_INTERPRET=1 when triton was "
            "imported?); run without TRITON_INTERPRET to compile the kernels"
        )


@contextlib.contextmanager
def _recording(launches: list[Launch]):
    original = JITFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        if warmup:
            return None
        launches.append(Launch(self, grid, args, dict(kwargs)))
        return None

    knobs = triton.knobs.runtime
    interp = knobs.interpret
    wrap = contextlib.nullcontext()
    try:
        from torch._library.triton import set_wrap_triton_enabled

        wrap = set_wrap_triton_enabled(False)  # wrap_triton(k) then launches k directly
    except ImportError:
        pass
    JITFunction.run = record
    knobs.interpret = True
    try:
        with wrap:
            yield
    finally:
        JITFunction.run = original
        knobs.interpret = interp


def capture(launcher: Callable, *args, **kwargs) -> Capture:
    """Run launcher(*args, **kwargs) with kernel launches recorded, not run."""
    if triton.knobs.runtime.interpret:
        raise InterpreterActive(
            "TRITON_INTERPRET is set: the Triton kernels of this process are interpreter "
            "functions; run the static report without TRITON_INTERPRET"
        )
    cap = Capture()
    counter = AtenOpCounter()
    with _recording(cap.launches), counter:
        cap.result = launcher(*args, **kwargs)
    cap.aten_ops = counter.ops
    if not cap.launches:
        raise RuntimeError(
            f"{getattr(launcher, '__name__', launcher)} launched no Triton kernel through "
            "JITFunction.run: update benchmarks/static/triton_capture.py for the new launcher"
        )
    for launch in cap.launches:
        _check_compilable(launch.kernel)
    return cap


@dataclass
class Bound:
    """A launch bound and specialised for one target, as JITFunction.run would."""

    target: GPUTarget
    signature: dict
    constexprs: dict
    attrs: dict
    options: Any  # the backend's options object (num_warps, num_stages, ...)


def bind(launch: Launch, cc: int) -> Bound:
    target = GPUTarget("cuda", cc, 32)
    backend = make_backend(target)
    kernel = launch.kernel
    kwargs = dict(launch.kwargs)
    kwargs["debug"] = kwargs.get("debug", kernel.debug) or triton.knobs.runtime.debug
    kwargs["instrumentation_mode"] = triton.knobs.compilation.instrumentation_mode
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(
        backend, kwargs, bound_args, specialization, options
    )
    return Bound(target, signature, constexprs, attrs, options)


def compile_launch(launch: Launch, cc: int):
    """triton.compile of the launch's kernel for sm_<cc>; returns Triton's CompiledKernel."""
    b = bind(launch, cc)
    src = ASTSource(launch.kernel, b.signature, b.constexprs, b.attrs)
    return triton.compile(src, target=b.target, options=b.options.__dict__)


def meta_like(t: torch.Tensor) -> torch.Tensor:
    """A meta tensor with t's shape, strides and dtype (no memory)."""
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")
