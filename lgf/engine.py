"""Model building from trainer arguments, the optimizer, and the per-epoch training loop.

`MODES` and `model_kwargs` are the one place that maps a --mode to lgf.models.build_retinanet
arguments; a new mode is one entry here.
"""

import contextlib
import math
import time

import torch

from . import distributed as du
from .ema import unwrap

# --mode -> arguments of lgf.models.build_retinanet: a block inserted at --insert-level, or a
# replacement of the FPN (neck). The order is the order of tables and the complexity report.
MODES = {
    "baseline": {},
    "lgf": {"block": "lgf"},
    "lgf_paper": {"block": "lgf_paper"},
    "se": {"block": "se"},
    "cbam": {"block": "cbam"},
    "glmd": {"block": "glmd"},
    "sie_fpn": {"neck": "sie_fpn"},
    "asff": {"neck": "asff"},
}

# Arguments that define the network: a resumed run must use the same values.
MODEL_ARGS = ("mode", "backbone", "insert_level", "gate", "num_classes", "img_size", "anchor_sizes")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def _get(args, key, default=None):
    return args.get(key, default) if isinstance(args, dict) else getattr(args, key, default)


def anchor_generator(sizes):
    """RetinaNet anchors with base sizes `sizes` (one per FPN level P3..P7), 3 scales per octave
    and aspect ratios 0.5, 1, 2, as torchvision's default (which is sizes 32, 64, 128, 256, 512)."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    sizes = [int(s) for s in sizes]
    if len(sizes) != 5 or min(sizes) < 1:
        raise ValueError(f"anchor sizes need 5 positive values (P3..P7), got {sizes}")
    return AnchorGenerator(
        tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in sizes),
        ((0.5, 1.0, 2.0),) * 5,
    )


def model_kwargs(args) -> dict:
    """Trainer arguments (Namespace or dict) -> keyword arguments of lgf.models.build_retinanet."""
    mode = _get(args, "mode", "baseline")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
    num_classes = _get(args, "num_classes")
    if not num_classes:
        raise ValueError("num_classes must be set (derive it from the annotation file)")
    img_size = int(_get(args, "img_size") or 640)
    kwargs = {
        "backbone": _get(args, "backbone", "resnet50"),
        **MODES[mode],
        "insert_level": _get(args, "insert_level", "C3"),
        "num_classes": int(num_classes),
        "weights": None,
        "weights_backbone": _get(args, "weights_backbone"),
        "gate": _get(args, "gate", "sigmoid"),
        "min_size": img_size,
        "max_size": img_size,
        "score_thresh": float(_get(args, "score_thresh", 0.05)),
    }
    if _get(args, "anchor_sizes"):
        kwargs["anchor_generator"] = anchor_generator(_get(args, "anchor_sizes"))
    return kwargs


def build_model(args, **overrides):
    """Builds the RetinaNet that the trainer arguments describe (overrides replace builder kwargs)."""
    from .models import (
        build_retinanet,  # imported here: the model module is optional at import time
    )

    kwargs = model_kwargs(args)
    kwargs.update(overrides)
    return build_retinanet(**kwargs)


def model_from_checkpoint(ckpt: dict, use_ema=True):
    """Rebuilds the model described by a checkpoint's args and loads its weights (EMA if asked and
    present). No download: the backbone weights come from the checkpoint. Returns (model, used_ema)."""
    model = build_model(ckpt["args"], weights_backbone=None)
    ema = ckpt.get("ema")
    used_ema = bool(use_ema and ema)
    model.load_state_dict(ema["module"] if used_ema else ckpt["model"])
    model.eval()
    return model, used_ema


def build_optimizer(model, opt="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4):
    """SGD (momentum) or AdamW; no weight decay on 1-D parameters (norms, biases, gammas)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if opt == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {opt!r}; expected 'sgd' or 'adamw'")


def steps_per_epoch(num_batches: int, accum_steps: int, iters_per_epoch: int = 0) -> int:
    """Optimizer steps in one epoch of `num_batches` micro-batches."""
    steps = math.ceil(num_batches / accum_steps)
    return min(steps, iters_per_epoch) if iters_per_epoch else steps


class TrainState:
    """Progress counters saved in checkpoints."""

    def __init__(self):
        self.epoch = 0  # completed epochs
        self.iter_in_epoch = 0  # optimizer steps done in the current (incomplete) epoch
        self.step = 0  # optimizer steps done in total

    def state_dict(self):
        return {"epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch, "step": self.step}

    def load_state_dict(self, d):
        self.epoch, self.iter_in_epoch, self.step = (
            int(d["epoch"]),
            int(d["iter_in_epoch"]),
            int(d["step"]),
        )


def _to_device(targets, device):
    return [
        {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
        for t in targets
    ]


def train_one_epoch(
    model,
    optimizer,
    scheduler,
    scaler,
    loader,
    device,
    state,
    *,
    epoch,
    accum_steps=1,
    amp_dtype=None,
    clip_grad=0.0,
    ema=None,
    max_iters=0,
    iters_per_epoch=0,
    log_every=10,
    logger=None,
    progress=False,
    on_step=None,
    regularizer=None,
):
    """Trains from state.iter_in_epoch to the end of the epoch (or until max_iters total steps).

    The loader's sampler must already skip the micro-batches of the steps done (mid-epoch resume).
    Losses of `accum_steps` micro-batches are averaged into one optimizer step. A non-finite loss
    on any rank raises NonFiniteLossError before anything is stepped. `on_step()` runs after each
    optimizer step. `regularizer(model)`, if given, returns a scalar added to the loss (logged as
    loss_feature_enhancement). Returns {"stopped": bool, "loss": mean loss, "steps": steps done,
    "time": s}.
    """
    model.train()
    full_batches = len(loader) + state.iter_in_epoch * accum_steps  # loader was shortened on resume
    n_steps = steps_per_epoch(full_batches, accum_steps, iters_per_epoch)
    total_micro = min(full_batches, n_steps * accum_steps)
    micro = state.iter_in_epoch * accum_steps
    is_ddp = hasattr(model, "no_sync")
    sums, count, window, window_n = {}, 0, {}, 0
    stopped = False
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=total_micro,
            initial=micro,
            desc=f"epoch {epoch + 1}",
            dynamic_ncols=True,
            disable=None,
            leave=False,
        )
    optimizer.zero_grad(set_to_none=True)
    for images, targets in loader:
        if micro >= total_micro:
            break
        group_start = (micro // accum_steps) * accum_steps
        group_size = min(accum_steps, total_micro - group_start)
        last_in_group = micro + 1 == group_start + group_size
        images = [im.to(device, non_blocking=True) for im in images]
        targets = _to_device(targets, device)
        sync = contextlib.nullcontext() if (last_in_group or not is_ddp) else model.no_sync()
        with sync:
            with torch.autocast(
                device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None
            ):
                loss_dict = model(images, targets)
            if regularizer is not None:  # outside autocast: the weight statistics stay fp32
                loss_dict["feature_enhancement"] = regularizer(unwrap(model))
            loss = sum(loss_dict.values())
            loss_value = float(loss.detach())
            finite = math.isfinite(loss_value)
            if not du.all_true(finite, device):
                parts = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in loss_dict.items())
                raise NonFiniteLossError(
                    f"non-finite training loss at epoch {epoch + 1}, step {state.step + 1} "
                    f"(rank {du.get_rank()}: loss={loss_value:.4g}; {parts}). Training stopped; "
                    f"the last checkpoint written before this step is intact. Try a lower --lr, "
                    f"--clip-grad, or --amp none."
                )
            scaler.scale(loss / group_size).backward()
        micro += 1
        vals = {"loss": loss_value}
        vals.update({f"loss_{k}": float(v.detach()) for k, v in loss_dict.items()})
        for k, v in vals.items():
            sums[k] = sums.get(k, 0.0) + v
            window[k] = window.get(k, 0.0) + v
        count += 1
        window_n += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{vals['loss']:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if not last_in_group:
            continue
        if clip_grad and clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if ema is not None:
            ema.update(model)
        state.step += 1
        state.iter_in_epoch += 1
        if logger is not None and (state.step % log_every == 0 or micro >= total_micro):
            rec = {"type": "train", "epoch": epoch + 1, "step": state.step, "lr": lr}
            rec.update({k: v / window_n for k, v in window.items()})
            logger.log(rec)
            window, window_n = {}, 0
        if on_step is not None:
            on_step()
        if max_iters and state.step >= max_iters:
            stopped = micro < total_micro
            break
    if bar is not None:
        bar.close()
    out = {k: v / max(1, count) for k, v in sums.items()}
    out.update(
        {
            "stopped": stopped,
            "steps": n_steps,
            "time": time.time() - t0,
            "epoch_done": micro >= total_micro,
        }
    )
    return out
