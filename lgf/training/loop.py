"""The per-epoch training loop: micro-batches, gradient accumulation, AMP, clipping, EMA.

`TrainStep` holds what every optimizer step uses (model, optimizer, scheduler, scaler and the
step's settings), `TrainState` the progress counters that checkpoints save, `EpochLimits` where
an epoch stops. `train_one_epoch` runs one epoch, or its rest after a mid-epoch resume.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..utils.setting_errors import NamesSettings
from ..utils.unwrap import unwrap
from . import distributed as du
from .ema import ModelEMA
from .multiscale import MultiScale, input_size
from .run_log import RunLogger

__all__ = [
    "AMP_DTYPES",
    "NonFiniteLossError",
    "LossMeter",
    "TrainStep",
    "TrainState",
    "EpochLimits",
    "steps_per_epoch",
    "train_one_epoch",
]

# amp setting -> autocast dtype (None: full precision); fp16 also needs a GradScaler.
AMP_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


class NonFiniteLossError(NamesSettings, FloatingPointError):
    """Training produced a NaN or infinite loss."""


@dataclass
class TrainStep:
    """What one optimizer step uses; fixed for a run."""

    model: nn.Module  # possibly wrapped in DistributedDataParallel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per optimizer step
    scaler: torch.amp.GradScaler
    device: torch.device
    accum_steps: int = 1  # micro-batches averaged into one optimizer step
    amp_dtype: torch.dtype | None = None
    clip_grad: float = 0.0  # max gradient norm; 0 = no clipping
    ema: ModelEMA | None = None
    # regularizer(model) -> scalar added to the loss (logged as loss_feature_enhancement)
    regularizer: Callable[[nn.Module], torch.Tensor] | None = None
    multiscale: MultiScale | None = None  # one random input size per micro-batch


class LossMeter:
    """Running sums of the loss terms: over the epoch and over the current logging window.

    Checkpoints save them, so the epoch means and the logged window means after a mid-epoch
    resume are those of the uninterrupted run."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.sums, self.count = {}, 0
        self.window, self.window_n = {}, 0
        self.dropped_boxes = 0  # boxes the augmentation removed, summed

    def add(self, values: dict[str, float], dropped_boxes: int = 0) -> None:
        self.dropped_boxes += dropped_boxes
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.window[k] = self.window.get(k, 0.0) + v
        self.count += 1
        self.window_n += 1

    def take_window(self) -> dict[str, float]:
        means = {k: v / self.window_n for k, v in self.window.items()}
        self.window, self.window_n = {}, 0
        return means

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.count) for k, v in self.sums.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "sums": dict(self.sums),
            "count": self.count,
            "window": dict(self.window),
            "window_n": self.window_n,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.sums = {str(k): float(v) for k, v in d["sums"].items()}
        self.count = int(d["count"])
        self.window = {str(k): float(v) for k, v in d["window"].items()}
        self.window_n = int(d["window_n"])


@dataclass
class TrainState:
    """Progress counters and the current epoch's loss sums, saved in checkpoints."""

    epoch: int = 0  # completed epochs
    iter_in_epoch: int = 0  # optimizer steps done in the current (incomplete) epoch
    step: int = 0  # optimizer steps done in total
    losses: LossMeter = field(default_factory=LossMeter)  # of the current epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "iter_in_epoch": self.iter_in_epoch,
            "step": self.step,
            "epoch_losses": self.losses.state_dict(),
        }

    def epoch_losses(self) -> LossMeter:
        """The loss sums of the current epoch: cleared at its start, kept (restored from the
        checkpoint) when a resumed run continues it."""
        if self.iter_in_epoch == 0:
            self.losses.reset()
        return self.losses

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.epoch = int(d["epoch"])
        self.iter_in_epoch = int(d["iter_in_epoch"])
        self.step = int(d["step"])
        self.losses.reset()
        if d.get("epoch_losses") is not None:  # format-1 checkpoints have none
            self.losses.load_state_dict(d["epoch_losses"])


@dataclass
class EpochLimits:
    """Where an epoch stops, and how it reports."""

    max_iters: int = 0  # stop when this many optimizer steps are done in total (0 = never)
    iters_per_epoch: int = 0  # cap of optimizer steps per epoch (0 = the whole loader)
    log_every: int = 10  # log the mean losses every N optimizer steps
    progress: bool = False  # tqdm bar


def steps_per_epoch(num_batches: int, accum_steps: int, iters_per_epoch: int = 0) -> int:
    """Optimizer steps in one epoch of `num_batches` micro-batches."""
    steps = math.ceil(num_batches / accum_steps)
    return min(steps, iters_per_epoch) if iters_per_epoch else steps


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    """The model's targets on `device` (without the transforms' "dropped_boxes" counts)."""
    return [
        {
            k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v)
            for k, v in t.items()
            if k != "dropped_boxes"
        }
        for t in targets
    ]


def _input_size(run: TrainStep, epoch: int, micro: int):
    if run.multiscale is None:
        return contextlib.nullcontext()
    return input_size(run.model, run.multiscale.size(epoch, micro))


def _check_finite(loss_value: float, loss_dict: dict, device, epoch: int, step: int) -> None:
    """Raises NonFiniteLossError on every rank when the loss is not finite on any rank."""
    if du.all_true(math.isfinite(loss_value), device):
        return
    parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
    raise NonFiniteLossError(
        lambda n: (
            f"non-finite training loss at epoch {epoch + 1}, step {step + 1} "
            f"(rank {du.get_rank()}: loss={loss_value:.4g}; {parts}). Training stopped; the last "
            f"checkpoint written before this step is intact. Try a lower {n('lr')}, gradient "
            f"clipping ({n('clip_grad')}) or full precision ({n('amp')} none)."
        )
    )


def _forward_backward(run: TrainStep, images, targets, group_size, sync, epoch, step, micro):
    """Loss of one micro-batch (number `micro` of the epoch) and its backward (scaled by
    1 / group_size); returns the loss terms as floats. `sync`: the last micro-batch of a step,
    where DDP all-reduces gradients."""
    images = [im.to(run.device, non_blocking=True) for im in images]
    targets = _to_device(targets, run.device)
    skip_sync = hasattr(run.model, "no_sync") and not sync
    with run.model.no_sync() if skip_sync else contextlib.nullcontext():
        with (
            _input_size(run, epoch, micro),
            torch.autocast(
                device_type=run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None
            ),
        ):
            loss_dict = run.model(images, targets)
        if run.regularizer is not None:  # outside autocast: the weight statistics stay fp32
            loss_dict["feature_enhancement"] = run.regularizer(unwrap(run.model))
        loss = sum(loss_dict.values())
        loss_value = float(loss.detach())
        _check_finite(loss_value, loss_dict, run.device, epoch, step)
        run.scaler.scale(loss / group_size).backward()
    values = {"loss": loss_value}
    values.update({f"loss_{k}": float(v.detach()) for k, v in loss_dict.items()})
    return values


def _optimizer_step(run: TrainStep, epoch: int, step: int) -> float:
    """Clips, steps the optimizer, scaler, scheduler and EMA; returns the lr that was used.
    Without a GradScaler (fp32, bf16) non-finite gradients stop the run before they reach the
    weights; with one (fp16) the scaler skips such steps and lowers its scale, as it should."""
    clip = bool(run.clip_grad and run.clip_grad > 0)
    if clip or not run.scaler.is_enabled():
        run.scaler.unscale_(run.optimizer)
        max_norm = run.clip_grad if clip else float("inf")  # inf: the norm only, no clipping
        norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(), max_norm))
        if not run.scaler.is_enabled() and not math.isfinite(norm):
            raise NonFiniteLossError(
                lambda n: (
                    f"non-finite gradients at epoch {epoch + 1}, step {step + 1} (total norm "
                    f"{norm}) with a finite loss. Training stopped; the last checkpoint written "
                    f"before this step is intact. With {n('amp')} bf16 on the CPU, try "
                    f"{n('amp')} none; else a lower {n('lr')} or {n('clip_grad')}."
                )
            )
    lr = run.optimizer.param_groups[0]["lr"]
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update(run.model)
    return lr


def _advance(bar, loss: float, lr: float) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")


def _progress_bar(total: int, initial: int, epoch: int):
    return tqdm(
        total=total,
        initial=initial,
        desc=f"epoch {epoch + 1}",
        dynamic_ncols=True,
        disable=None,
        leave=False,
    )


def train_one_epoch(
    run: TrainStep,
    loader: DataLoader,
    state: TrainState,
    epoch: int,
    limits: EpochLimits | None = None,
    logger: RunLogger | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Trains from state.iter_in_epoch to the end of the epoch (or until limits.max_iters).

    The loader's sampler must already skip the micro-batches of the steps done (mid-epoch
    resume). A non-finite loss on any rank raises NonFiniteLossError before anything is stepped.
    `on_step()` runs after each optimizer step; `logger.log(record)` gets the mean losses every
    `limits.log_every` steps. Returns the epoch's mean loss terms ("loss", "loss_<name>") and
    "stopped" (by max_iters), "steps" (of a full epoch), "time" (s), "epoch_done",
    "dropped_boxes" (boxes the augmentation removed from this rank's images).
    """
    limits = limits or EpochLimits()
    run.model.train()
    accum = run.accum_steps
    full_batches = len(loader) + state.iter_in_epoch * accum  # loader was shortened on resume
    n_steps = steps_per_epoch(full_batches, accum, limits.iters_per_epoch)
    total_micro = min(full_batches, n_steps * accum)
    micro = state.iter_in_epoch * accum
    meter, stopped, t0 = state.epoch_losses(), False, time.time()
    bar = _progress_bar(total_micro, micro, epoch) if limits.progress else None
    run.optimizer.zero_grad(set_to_none=True)
    for images, targets in loader:
        if micro >= total_micro:
            break
        group_start = (micro // accum) * accum
        group_size = min(accum, total_micro - group_start)
        last_in_group = micro + 1 == group_start + group_size
        values = _forward_backward(
            run, images, targets, group_size, last_in_group, epoch, state.step, micro
        )
        micro += 1
        meter.add(values, dropped_boxes=sum(int(t.get("dropped_boxes", 0)) for t in targets))
        _advance(bar, values["loss"], run.optimizer.param_groups[0]["lr"])
        if not last_in_group:
            continue
        lr = _optimizer_step(run, epoch, state.step)
        state.step += 1
        state.iter_in_epoch += 1
        if logger is not None and (state.step % limits.log_every == 0 or micro >= total_micro):
            record = {"type": "train", "epoch": epoch + 1, "step": state.step, "lr": lr}
            logger.log({**record, **meter.take_window()})
        if on_step is not None:
            on_step()
        if limits.max_iters and state.step >= limits.max_iters:
            stopped = micro < total_micro
            break
    if bar is not None:
        bar.close()
    done = {"stopped": stopped, "steps": n_steps, "time": time.time() - t0}
    done.update(dropped_boxes=meter.dropped_boxes, epoch_done=micro >= total_micro)
    return {**meter.means(), **done}
