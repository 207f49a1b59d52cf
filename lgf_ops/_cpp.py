"""Loads the compiled extension lgf_ops._C and registers fake + autograd for its ops.

The C++ side (csrc/lgf_ops.cpp) defines lgf::fused_forward and lgf::fused_backward with
TORCH_LIBRARY and registers the CPU (and, when built, CUDA) kernels. Here we add what
torch.compile and autograd need: shape-only fake kernels, the backward formula, and a FLOP count.
"""
import torch

try:
    from . import _C  # noqa: F401  (loading it runs the TORCH_LIBRARY registrations)

    _LOAD_ERROR = None
except ImportError as e:  # a source checkout that was never built
    _C = None
    _LOAD_ERROR = str(e)


def load_error():
    return _LOAD_ERROR or "unknown"


def _has_kernel(key):
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("lgf::fused_forward", key)


def has_cpu_kernel():
    return _has_kernel("CPU")


def has_cuda_kernel():
    return _has_kernel("CUDA")


def output_memory_format(x):
    """Layout of y and dx: channels_last when x is (and not also plain-contiguous), else NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


if _C is not None:

    @torch.library.register_fake("lgf::fused_forward")
    def _fused_forward_fake(x, weight, bias, g, gate, gamma):
        return torch.empty_like(x, memory_format=output_memory_format(x))

    @torch.library.register_fake("lgf::fused_backward")
    def _fused_backward_fake(dy, x, weight, bias, g, gate, gamma):
        dx = torch.empty_like(x, memory_format=output_memory_format(x))
        return (
            dx,
            torch.empty_like(weight, memory_format=torch.contiguous_format),
            torch.empty_like(bias, memory_format=torch.contiguous_format),
            torch.empty_like(g, memory_format=torch.contiguous_format),
            torch.empty_like(gate, memory_format=torch.contiguous_format),
            torch.empty_like(gamma, memory_format=torch.contiguous_format),
        )

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)  # only the inputs: backward recomputes l

    def _backward(ctx, dy):
        x, weight, bias, g, gate, gamma = ctx.saved_tensors
        return torch.ops.lgf.fused_backward(dy, x, weight, bias, g, gate, gamma)

    torch.library.register_autograd("lgf::fused_forward", _backward, setup_context=_setup_context)

    def _no_double_backward(ctx, *grads):
        raise NotImplementedError(
            "lgf_fused: double backward (gradients of gradients) is not implemented; "
            "use backend='reference' if you need it"
        )

    def _no_setup(ctx, inputs, output):
        pass

    torch.library.register_autograd("lgf::fused_backward", _no_double_backward, setup_context=_no_setup)
