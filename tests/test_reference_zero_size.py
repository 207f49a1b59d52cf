"""The reference backend takes every zero-size shape the C++ kernels take (issue 19): an empty y
of x's shape and dtype, and zero gradients for every input, as the C++ backend gives."""

import pytest
import torch

import lgf_ops

SHAPES = [(0, 4, 5, 5), (2, 4, 0, 5), (2, 4, 5, 0), (2, 0, 5, 5), (0, 0, 0, 0)]


def _inputs(N, C, H, W, dtype):
    pdt = torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
    ts = [
        torch.randn(N, C, H, W, dtype=dtype),
        torch.randn(C, 1, 3, 3, dtype=pdt),
        torch.randn(C, dtype=pdt),
        torch.randn(N, C, dtype=dtype),
        torch.randn(6, C, dtype=pdt),
        torch.randn(C, dtype=pdt),
    ]
    return [t.requires_grad_() for t in ts]


def _run(backend, shape, dtype):
    torch.manual_seed(0)
    inputs = _inputs(*shape, dtype)
    y = lgf_ops.lgf_fused(*inputs, backend=backend)
    y.sum().backward()
    return y, [t.grad for t in inputs], inputs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_zero_size_gives_empty_y_and_zero_gradients(shape, dtype):
    y, grads, inputs = _run("reference", shape, dtype)
    assert y.shape == shape and y.dtype == dtype
    for t, gr in zip(inputs, grads):
        assert gr is not None and gr.shape == t.shape and gr.dtype == t.dtype
        assert not gr.any()


@pytest.mark.skipif("cpp" not in lgf_ops.available_backends(), reason="C++ extension not built")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_cpp_backend_gives_the_same(shape):
    y, grads, _ = _run("reference", shape, torch.float32)
    y_cpp, grads_cpp, _ = _run("cpp", shape, torch.float32)
    assert y_cpp.shape == y.shape and y_cpp.dtype == y.dtype
    for a, b in zip(grads, grads_cpp):
        torch.testing.assert_close(a, b)


def test_reference_zero_size_supports_create_graph():
    """The reference is the backend for double backward: create_graph works on empty inputs too."""
    x, w, b, g, gate, gamma = _inputs(0, 3, 4, 4, torch.float64)
    y = lgf_ops.lgf_fused(x, w, b, g, gate, gamma, backend="reference")
    gx, gw = torch.autograd.grad(y.sum(), (x, w), create_graph=True)
    assert gx.shape == x.shape and gw.shape == w.shape and not gw.any()
