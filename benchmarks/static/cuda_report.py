"""Records of the CUDA kernels of the built extension (lgf_ops/_C*.so, sm_80 and sm_90 SASS)."""

from __future__ import annotations

import os
import re
import sysconfig
from dataclasses import dataclass

import torch

from . import cuda_plans
from .cases import DTYPES, OpCase
from .counting import Analysis, analyse
from .cuobjdump import Resources, dump_binary
from .estimate import kernel_estimate, op_record
from .gpus import GPUS
from .host_ops import cpu_wrapper_groups
from .plan_api import describe
from .sass import SassFunction

SCALAR_DTYPES = {
    "float": torch.float32,
    "double": torch.float64,
    "c10::Half": torch.float16,
    "c10::BFloat16": torch.bfloat16,
}
_BUILTIN = {"f": "float", "d": "double"}


class Skip(RuntimeError):
    """This part of the report cannot run here; the message says why."""


def demangle(name: str) -> tuple[str, str]:
    """(kernel, first template argument) of a mangled lgf::cuda kernel template instance, e.g.
    _ZN3lgf4cuda19forward_nchw_kernelIN3c104HalfEfEEv... -> ("forward_nchw_kernel", "c10::Half")."""
    m = re.match(r"_ZN((?:\d+\w+?)+)I", name)
    if not m:
        return name, ""
    parts, rest = [], m.group(1)
    while rest:
        k = re.match(r"(\d+)", rest)
        n = int(k.group(1))
        parts.append(rest[len(k.group(1)) : len(k.group(1)) + n])
        rest = rest[len(k.group(1)) + n :]
    args = name[m.end() :]
    if args[0] in _BUILTIN:
        return parts[-1], _BUILTIN[args[0]]
    if args[0] == "N":
        inner, rest = [], args[1:]
        while rest and rest[0].isdigit():
            k = re.match(r"(\d+)", rest)
            n = int(k.group(1))
            inner.append(rest[len(k.group(1)) : len(k.group(1)) + n])
            rest = rest[len(k.group(1)) + n :]
        return parts[-1], "::".join(inner)
    return parts[-1], ""


def extension_path() -> str:
    """The lgf_ops/_C*.so this Python loads (its own ABI suffix, in this checkout)."""
    path = os.path.join(cuda_plans.REPO, "lgf_ops", "_C" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(path):
        raise Skip(f"the extension is not built: no {path} (build it first)")
    return path


def _arch(a: str) -> str:
    return re.match(r"sm_\d+", a).group(0) if re.match(r"sm_\d+", a) else a


@dataclass
class CudaKernel:
    kernel: str
    dtype: torch.dtype
    arch: str
    fn: SassFunction
    res: Resources
    analysis: Analysis | None = None

    def analysed(self) -> Analysis:
        if self.analysis is None:
            self.analysis = analyse(self.fn)
        return self.analysis


def load_kernels(path: str | None = None) -> dict[tuple[str, torch.dtype, str], CudaKernel]:
    """Every kernel instance of the extension by (kernel, dtype, arch), checked against the
    plans: a kernel without a plan, or a plan whose kernel is gone, is an error."""
    path = path or extension_path()
    cuda_plans.check_source_facts()
    res, sass = dump_binary(path)
    if not sass:
        raise Skip(f"{path} has no CUDA device code (extension built without CUDA)")
    by_res = {(r.name, _arch(r.arch)): r for r in res}
    out = {}
    for fn in sass:
        kernel, scalar = demangle(fn.name)
        if kernel not in cuda_plans.KERNELS:
            raise RuntimeError(
                f"CUDA kernel {kernel} ({fn.name}, {fn.arch}) has no plan in "
                "benchmarks/static/cuda_plans.py KERNELS: add one"
            )
        if scalar not in SCALAR_DTYPES:
            raise RuntimeError(f"CUDA kernel {fn.name}: unknown scalar type {scalar!r}")
        arch = _arch(fn.arch)
        r = by_res.get((fn.name, arch))
        if r is None:
            raise RuntimeError(f"cuobjdump -res-usage has no line for {fn.name} ({arch})")
        out[(kernel, SCALAR_DTYPES[scalar], arch)] = CudaKernel(
            kernel, SCALAR_DTYPES[scalar], arch, fn, r
        )
    gone = sorted(set(cuda_plans.KERNELS) - {k for k, _, _ in out})
    if gone:
        raise RuntimeError(
            f"benchmarks/static/cuda_plans.py has plans for kernels that are not in {path}: "
            f"{gone}; remove or rename them"
        )
    return out


def op_records(kernels: dict, case: OpCase, gpus) -> list[dict]:
    """Records of one op call (one per GPU) from the extension's kernels and the plans."""
    itemsize = torch.empty((), dtype=case.dtype).element_size()
    acc = 8 if case.dtype == torch.float64 else 4
    plan_case = cuda_plans.Case(case.shape, case.layout, itemsize, acc)
    plan = cuda_plans.OPS[(case.direction, case.layout)]
    works = {k: cuda_plans.KERNELS[k].work(plan_case) for k in plan.kernels}
    groups = cpu_wrapper_groups(case.shape[0], case.shape[1], case.dtype)
    host = []
    for name in plan.host:
        if name in cuda_plans.PLAN_HOST_OPS:
            host += cuda_plans.PLAN_HOST_OPS[name](plan_case)
        else:
            host += groups[name]
    out = []
    for gname in gpus:
        gpu = GPUS[gname]
        ests = []
        for k in plan.kernels:
            ck = kernels.get((k, case.dtype, gpu.arch))
            if ck is None:
                raise RuntimeError(f"{k} for {case.dtype} has no {gpu.arch} SASS in the extension")
            name = f"{k}<{case.dtype_name}>"
            loops = cuda_plans.KERNELS[k].loops
            ests.append(kernel_estimate(name, gpu.arch, ck.analysed(), ck.res, loops, works[k]))
        out.append(op_record(case.key("cuda"), gpu, plan_case.numel, itemsize, ests, host))
    return out


def loop_listing(kernels: dict, args) -> list[str]:
    """describe() of every kernel instance of the chosen dtypes and GPUs."""
    archs = {GPUS[g].arch for g in args.gpu}
    dtypes = {DTYPES[d] for d in args.dtype}
    out = []
    for (name, dtype, arch), ck in sorted(
        kernels.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), kv[0][2])
    ):
        if arch in archs and dtype in dtypes:
            who = f"{name}<{str(dtype).replace('torch.', '')}> {arch}"
            out.append(describe(ck.analysed(), cuda_plans.KERNELS[name].loops, who))
    return out
