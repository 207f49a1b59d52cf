"""Input builders and tolerances shared by the op tests of every backend."""

import torch

TOL = {torch.float64: 1e-10, torch.float32: 3e-5, torch.float16: 2e-2, torch.bfloat16: 8e-2}
GRAD_NAMES = ("x", "weight", "bias", "g", "gate", "gamma")


def make_inputs(
    N, C, H, W, dtype=torch.float32, layout="nchw", param_dtype=None, device="cpu", seed=0
):
    """Random inputs of lgf_fused in the requested layout, all requiring grad.

    layout: "nchw" (contiguous), "channels_last", "permuted" (a transposed view, neither NCHW-
    nor channels_last-contiguous) or "strided" (every other column of a wider tensor).
    """
    gen = torch.Generator().manual_seed(seed)
    param_dtype = param_dtype or dtype

    def rnd(*shape, scale=1.0, dt=dtype):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dt).to(device)

    if layout == "nchw":
        x = rnd(N, C, H, W)
    elif layout == "channels_last":
        x = rnd(N, C, H, W).contiguous(memory_format=torch.channels_last)
    elif layout == "permuted":
        x = rnd(N, W, H, C).permute(0, 3, 2, 1)
    elif layout == "strided":
        x = rnd(N, C, H, 2 * W)[..., ::2]
    else:
        raise ValueError(layout)
    weight = rnd(C, 1, 3, 3, scale=0.4, dt=param_dtype)
    bias = rnd(C, scale=0.2, dt=param_dtype)
    g = rnd(N, C)
    gate = rnd(6, C, dt=param_dtype)
    gamma = rnd(C, dt=param_dtype)
    return [t.detach().requires_grad_() for t in (x, weight, bias, g, gate, gamma)]


def assert_close_scaled(actual, expected, tol, name=""):
    """max |a - e| <= tol * max(1, max |e|): a relative bound that tolerates tiny values."""
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    if expected.numel() == 0:
        return
    a, e = actual.double(), expected.double()
    assert torch.isfinite(a).all(), f"{name}: non-finite values"
    err = (a - e).abs().max().item()
    scale = max(1.0, e.abs().max().item())
    assert err <= tol * scale, f"{name}: max abs error {err:.3e} > {tol:.1e} * {scale:.3e}"


def forward_and_grads(fn, inputs, dy):
    y = fn(*inputs)
    grads = torch.autograd.grad(y, inputs, dy, allow_unused=False)
    return y, grads


def triton_runs_cpu_tensors() -> bool:
    """The Triton backend takes CPU tensors only under Triton's interpreter (conftest.py sets
    TRITON_INTERPRET=1 on machines without a GPU); on a GPU host it needs CUDA tensors."""
    import lgf_ops

    if "triton" not in lgf_ops.available_backends():
        return False
    from lgf_ops.triton_launch import interpreting

    return interpreting()


def backends_for_cpu_tensors() -> list[str]:
    """The fused backends (besides "auto" and "reference") that run CPU tensors here."""
    import lgf_ops

    names = ["cpp"] if "cpp" in lgf_ops.available_backends() else []
    return names + (["triton"] if triton_runs_cpu_tensors() else [])
