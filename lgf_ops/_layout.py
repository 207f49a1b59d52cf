"""The memory-layout rule of the op's outputs, shared by every backend and the fake kernels."""

import torch
from torch import Tensor


def output_memory_format(x: Tensor) -> torch.memory_format:
    """Layout of y and dx: channels_last when x is (and not also plain-contiguous), else NCHW."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
