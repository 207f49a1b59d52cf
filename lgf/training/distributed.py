"""Process-group helpers for single-process and torchrun (DistributedDataParallel) runs.

A run is distributed when the environment has WORLD_SIZE > 1 (torchrun sets RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT). The backend is NCCL for CUDA devices and gloo otherwise,
so a multi-process run also works on CPU. Every helper here is a no-op in a single-process run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from ..utils.setting_errors import SettingError


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """Reads RANK / LOCAL_RANK / WORLD_SIZE from the environment (torchrun's variables)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers: {exc}") from None
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def init_distributed(
    device: str = "auto", dist_url: str = "env://", backend: str = "auto"
) -> tuple[DistInfo, torch.device]:
    """Initialises the process group when WORLD_SIZE > 1 and picks this process's device.

    device: "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:N". In a distributed CUDA
    run each process uses cuda:LOCAL_RANK. Returns (DistInfo, torch.device).
    """
    info = env_dist_info()
    dev = resolve_device(device, info.local_rank if info.distributed else None)
    if info.distributed and not (dist.is_available() and dist.is_initialized()):
        if not dist.is_available():
            raise RuntimeError(
                "WORLD_SIZE > 1 but torch.distributed is not available in this build"
            )
        if backend == "auto":
            backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend=backend, init_method=dist_url, rank=info.rank, world_size=info.world_size
        )
    return info, dev


def resolve_device(
    device: str | torch.device | None, local_rank: int | None = None
) -> torch.device:
    """A device name ("auto", "cpu", "cuda", "cuda:N") -> torch.device; "auto" is CUDA when
    available, else CPU; a bare "cuda" takes the index `local_rank` (0 if None)."""
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        why = str(exc)
        raise SettingError(lambda n: f"{n('device')}: cannot parse {device!r}: {why}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SettingError(
                lambda n: f"{n('device')} {device}: CUDA is not available on this machine"
            )
        if dev.index is None:
            dev = torch.device("cuda", local_rank or 0)
    return dev


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Returns [obj of rank 0, obj of rank 1, ...]; [obj] in a single-process run."""
    if not is_dist():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Returns src's obj on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copies src's buffers (e.g. BatchNorm running statistics, which DDP ranks update from their
    own batches) to every rank, so that all ranks evaluate the same network."""
    if not is_dist():
        return
    for buf in module.buffers():
        dist.broadcast(buf.data, src=src)


def all_true(flag: bool, device: torch.device) -> bool:
    """True when flag is True on every rank (a collective: every rank must call it)."""
    if not is_dist():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()
