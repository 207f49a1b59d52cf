"""Trainer checkpoints: atomic writes, verified `torch.load(weights_only=True)` reads
(docs/design.md §5).

A checkpoint is a dict of tensors and primitive containers only (no pickled classes), so it
loads with weights_only=True. It is written through lgf.utils.atomic_write: a process killed at
any moment leaves either the old checkpoint or the new one, never a partial file.

`save_checkpoint` stamps the format version and a content checksum (SHA-256 over every key,
primitive and tensor byte, `content_digest`). `load_checkpoint` refuses, with a message naming the
file: an unreadable file, one that is not a trainer checkpoint, a format newer than this code
reads, a checksum that does not match (a changed byte), `args` that do not hold settings of the
right types (lgf.training.config.TrainConfig), and non-finite weights (naming the tensor).
"""

from __future__ import annotations

import hashlib
import os
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from ..utils.atomic_write import atomic_write
from .config import TrainConfig

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "content_digest",
    "save_checkpoint",
    "load_checkpoint",
    "primitive_args",
]

# 1: the first format; 2: adds "checksum" and the running epoch-loss sums. Version 1 files are
# still read (without verification, with a warning).
FORMAT_VERSION = 2
_CHECKSUM = "checksum"


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable, corrupt, from an unknown format, or not one of ours."""


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)}:".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()))
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}{{".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}{len(obj)}[".encode())
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(ckpt: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a checkpoint's content without its checksum entry: keys in order,
    primitives by type and repr, tensors by dtype, shape and bytes."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in ckpt.items() if k != _CHECKSUM})
    return h.hexdigest()


def save_checkpoint(ckpt: Mapping[str, Any], path: str | os.PathLike) -> None:
    """torch.save(ckpt) to `path` atomically, with the format version and a content checksum."""
    body = {k: v for k, v in ckpt.items() if k != _CHECKSUM}
    body["format_version"] = FORMAT_VERSION
    body[_CHECKSUM] = {"algorithm": "sha256", "digest": content_digest(body)}
    with atomic_write(path, "wb") as f:
        torch.save(body, f)


def _check_version_and_checksum(ckpt: dict[str, Any], path: str) -> None:
    version = ckpt.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path!r}: unknown checkpoint format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path!r} has checkpoint format {version}, newer than the {FORMAT_VERSION} this "
            "version of lgf reads; update lgf to load it"
        )
    stamp = ckpt.get(_CHECKSUM)
    if version == 1:
        warnings.warn(f"{path!r}: a format-1 checkpoint has no checksum; its content is unverified")
        return
    if not isinstance(stamp, dict) or stamp.get("algorithm") != "sha256":
        raise CheckpointError(f"{path!r}: the checkpoint's checksum entry is missing or unknown")
    if content_digest(ckpt) != stamp.get("digest"):
        raise CheckpointError(
            f"{path!r} is corrupt: its content does not match the checksum written with it "
            "(a changed or damaged byte); use another copy or an earlier checkpoint"
        )


def _fits(value: Any, hint: Any) -> bool:
    """Whether a saved setting matches a TrainConfig annotation (int for float is fine)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _check_args(args: Any, path: str) -> None:
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise CheckpointError(
            f"{path!r}: 'args' must be a dict of settings by name, got {type(args).__name__}"
        )
    hints = typing.get_type_hints(TrainConfig)
    for key, value in args.items():
        if key in hints and not _fits(value, hints[key]):
            raise CheckpointError(
                f"{path!r}: setting {key!r} in 'args' is {value!r} ({type(value).__name__}), "
                f"not a {hints[key]}; the checkpoint's settings are damaged"
            )


def _check_weights(ckpt: dict[str, Any], path: str) -> None:
    ema = ckpt.get("ema")
    sections = [("model", ckpt["model"])]
    if isinstance(ema, dict) and "module" in ema:
        sections.append(("ema", ema["module"]))
    for section, state in sections:
        if not isinstance(state, dict):
            raise CheckpointError(f"{path!r}: {section!r} must be a state dict of tensors")
        for name, t in state.items():
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"{path!r}: {section} entry {name!r} is not a tensor")
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise CheckpointError(
                    f"{path!r}: {section} tensor {name!r} holds {bad} NaN or infinite values "
                    f"of {t.numel()}; these weights cannot be used"
                )


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Loads a checkpoint with weights_only=True and verifies it (see the module docstring)."""
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
    _check_version_and_checksum(ckpt, path)
    _check_args(ckpt["args"], path)
    _check_weights(ckpt, path)
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
