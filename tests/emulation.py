"""Runs the device code of csrc/cuda on the CPU: tests/cuda_emulation/emulate_kernels.cpp built
with the host compiler and called through ctypes with the launch plans of the real wrappers.
Shared by test_cuda.py and test_extreme_values.py."""

import atexit
import ctypes
import functools
import os
import shlex
import shutil
import subprocess
import tempfile

import pytest
import torch

from lgf_ops import _cpp

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(REPO, "csrc")
EMU_DIR = os.path.join(REPO, "tests", "cuda_emulation")
DTYPE_CODE = {torch.float32: 0, torch.float64: 1, torch.float16: 2, torch.bfloat16: 3}
I64 = ctypes.c_int64


def host_cxx():
    return shlex.split(os.environ.get("CXX", "")) or [
        c for c in (shutil.which("g++") or shutil.which("c++"),) if c
    ]


def build_emulation(out, extra_flags=()):
    """tests/cuda_emulation/emulate_kernels.cpp built with the host compiler into `out`."""
    cxx = host_cxx()
    if not cxx:
        pytest.skip("no host C++ compiler (g++/c++) to build the CUDA emulation")
    torch_include = os.path.join(os.path.dirname(torch.__file__), "include")
    src = os.path.join(EMU_DIR, "emulate_kernels.cpp")
    cmd = cxx + ["-std=c++20", "-O2", "-shared", "-fPIC", *extra_flags]
    cmd += ["-I", CSRC, "-I", torch_include, src, "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, (
        f"building the CUDA emulation failed:\n{' '.join(cmd)}\n{res.stderr[-4000:]}"
    )
    return str(out)


def load_emulation(path):
    lib = ctypes.CDLL(path)
    for name in ("lgf_emu_ws_entries", "lgf_emu_selftest_fast_div"):
        getattr(lib, name).restype = I64
    lib.lgf_emu_ws_entries.argtypes = [ctypes.c_int, ctypes.c_int] + [I64] * 5
    lib.lgf_emu_selftest_fast_div.argtypes = [ctypes.c_uint32]
    lib.lgf_emu_plan.argtypes = [ctypes.c_int] * 3 + [I64] * 4 + [ctypes.POINTER(I64)]
    return lib


@functools.cache
def shared_emulation():
    """The emulation library, built once per test session (test_cuda.py and
    test_extreme_values.py share it); removed when the interpreter exits."""
    folder = tempfile.mkdtemp(prefix="lgf_emu_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return load_emulation(build_emulation(os.path.join(folder, "lgf_emu.so")))


def _longs(values):
    return (I64 * 4)(*values)


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr())


def _acc(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _params(weight, bias, g, gate, gamma):
    """The parameters as the wrappers pass them: own dtype, contiguous, in ParamView order."""
    keep = [t.detach().contiguous() for t in (weight, bias, gate, gamma, g)]
    return keep, (ctypes.c_void_p * 5)(*[t.data_ptr() for t in keep])


def _param_float(x, weight):
    return int(weight.dtype == torch.float32 and x.dtype in (torch.float16, torch.bfloat16))


def _empty_out(x):
    fmt = _cpp.output_memory_format(x)
    return torch.full_like(x.detach(), float("nan"), memory_format=fmt)  # NaN: unwritten shows up


def _nhwc(x):
    return int(_cpp.output_memory_format(x) == torch.channels_last)


def emu_forward(lib, x, weight, bias, g, gate, gamma, reverse_threads=False, reverse_blocks=False):
    x = x.detach()
    keep, ptrs = _params(weight, bias, g, gate, gamma)
    y = _empty_out(x)
    err = ctypes.create_string_buffer(1024)
    rc = lib.lgf_emu_forward(
        DTYPE_CODE[x.dtype],
        _param_float(x, weight),
        _ptr(x),
        _longs(x.shape),
        _longs(x.stride()),
        _ptr(y),
        ptrs,
        _nhwc(x),
        int(reverse_threads),
        int(reverse_blocks),
        err,
        1024,
    )
    assert rc == 0, err.value.decode()
    return y


def emu_backward(
    lib,
    dy,
    x,
    weight,
    bias,
    g,
    gate,
    gamma,
    reverse_threads=False,
    reverse_blocks=False,
    target_blocks=0,
):
    """dx, the parameter gradients (dweight, dbias, dg, dgate, dgamma) and the workspace."""
    x, dy = x.detach(), dy.detach()
    keep, ptrs = _params(weight, bias, g, gate, gamma)
    dx = _empty_out(x)
    N, C, H, W = x.shape
    code, nhwc = DTYPE_CODE[x.dtype], _nhwc(x)
    ws = torch.full(
        (lib.lgf_emu_ws_entries(code, nhwc, N, C, H, W, target_blocks),),
        float("nan"),
        dtype=_acc(x.dtype),
    )
    pd = weight.dtype
    grads = [
        torch.full(s, float("nan"), dtype=d)
        for s, d in (((C, 1, 3, 3), pd), ((C,), pd), ((N, C), g.dtype), ((6, C), pd), ((C,), pd))
    ]
    order = (grads[0], grads[1], grads[3], grads[4], grads[2])  # the order of GradOutputs
    err = ctypes.create_string_buffer(1024)
    rc = lib.lgf_emu_backward(
        code,
        _param_float(x, weight),
        _ptr(dy),
        _longs(dy.stride()),
        _ptr(x),
        _longs(x.shape),
        _longs(x.stride()),
        _ptr(dx),
        ptrs,
        _ptr(ws),
        (ctypes.c_void_p * 5)(*[t.data_ptr() for t in order]),
        nhwc,
        int(reverse_threads),
        int(reverse_blocks),
        I64(target_blocks),
        err,
        1024,
    )
    assert rc == 0, err.value.decode()
    return dx, tuple(grads), ws
