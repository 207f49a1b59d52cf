"""Running ``cuobjdump`` (-res-usage, -sass) on a binary and reading its resource report.

The CUDA toolkit of our machines has no cuobjdump; the ``triton`` package ships one under
``triton/backends/nvidia/bin``. ``find_cuobjdump`` looks there, then in the toolkit and PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from .sass import SassFunction, parse_sass


class ToolMissing(RuntimeError):
    """No cuobjdump on this machine."""


def find_cuobjdump() -> str:
    cands = []
    try:
        import triton

        cands.append(
            os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        )
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            cands.append(os.path.join(home, "bin", "cuobjdump"))
    on_path = shutil.which("cuobjdump")
    if on_path:
        cands.append(on_path)
    for c in cands:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise ToolMissing("cuobjdump not found (looked in the triton package, $CUDA_HOME/bin and PATH)")


def run_cuobjdump(path: str, *flags: str) -> str:
    proc = subprocess.run(
        [find_cuobjdump(), *flags, path], capture_output=True, text=True, timeout=300
    )
    if "does not contain device code" in proc.stdout + proc.stderr:
        return ""
    if proc.returncode != 0:
        raise RuntimeError(
            f"cuobjdump {' '.join(flags)} {path} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        )
    return proc.stdout


@dataclass(frozen=True)
class Resources:
    """One function's line of ``cuobjdump -res-usage``."""

    name: str
    arch: str
    regs: int
    stack: int  # bytes of stack frame per thread
    shared: int  # bytes of static shared memory (sm_90: the reserved 1 KB included)
    local: int  # bytes of local memory per thread outside the stack


_RES_FUNC = re.compile(r"^\s*Function\s+(\S+?):\s*$")
_RES_VALS = re.compile(r"\b(REG|STACK|SHARED|LOCAL):(\d+)")
_ARCH = re.compile(r"^\s*arch\s*=\s*(sm_\w+)")


def parse_res_usage(text: str) -> list[Resources]:
    out, arch, name = [], "unknown", None
    for line in text.splitlines():
        if m := _ARCH.match(line):
            arch = m.group(1)
        elif m := _RES_FUNC.match(line):
            name = m.group(1)
        elif name and (vals := dict(_RES_VALS.findall(line))):
            out.append(
                Resources(
                    name,
                    arch,
                    int(vals.get("REG", 0)),
                    int(vals.get("STACK", 0)),
                    int(vals.get("SHARED", 0)),
                    int(vals.get("LOCAL", 0)),
                )
            )
            name = None
    return out


def dump_binary(path: str) -> tuple[list[Resources], list[SassFunction]]:
    """Resource usage and SASS of every function in a cubin or a host binary with a fatbin."""
    res = parse_res_usage(run_cuobjdump(path, "-res-usage"))
    sass = parse_sass(run_cuobjdump(path, "-sass"))
    return res, sass


def dump_cubin_bytes(cubin: bytes) -> tuple[list[Resources], list[SassFunction]]:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "kernel.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return dump_binary(path)
