"""Trainer checkpoints: atomic writes, `torch.load(weights_only=True)` reads (docs/design.md §5).

A checkpoint is a dict of tensors and primitive containers only (no pickled classes), so it
loads with weights_only=True. It is written through lgf.utils.atomic_write: a process killed at
any moment leaves either the old checkpoint or the new one, never a partial file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..utils.atomic_write import atomic_write

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "primitive_args",
]

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or not one of ours."""


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """torch.save(ckpt) to `path` atomically."""
    with atomic_write(path, "wb") as f:
        torch.save(ckpt, f)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with weights_only=True; clear errors for a missing or corrupt file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path!r}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        raise CheckpointError(
            f"{path!r} is not an LGF training checkpoint (no 'model'/'args' entries)"
        )
    return ckpt


def primitive_args(args: Any) -> dict[str, Any]:
    """Settings (a dict, dataclass or Namespace) -> a dict holding only str/int/float/bool/None
    and lists of them, which weights_only loading accepts."""
    items = args.items() if isinstance(args, Mapping) else vars(args).items()
    out = {}
    for k, v in items:
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(
            isinstance(x, (str, int, float, bool)) or x is None for x in v
        ):
            out[k] = list(v)
    return out
