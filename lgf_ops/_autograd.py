"""Autograd pieces shared by the C++ and Triton registrations of the op: the forward saves only
its inputs (the backward recomputes l), and double backward is refused with a clear error."""

from torch import Tensor


def save_inputs(ctx, inputs: tuple[Tensor, ...], output: Tensor) -> None:
    """setup_context of the forward: keep only the inputs."""
    ctx.save_for_backward(*inputs)


def no_double_backward(ctx, *grads: Tensor):
    raise NotImplementedError(
        "lgf_fused: double backward (gradients of gradients) is not implemented; "
        "use backend='reference' if you need it"
    )


def no_setup(ctx, inputs: tuple[Tensor, ...], output) -> None:
    pass
