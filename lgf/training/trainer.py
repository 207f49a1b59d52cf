"""One training run: data, model, loop, evaluation, checkpoints, logs (docs/design.md §5).

Outputs in `output_dir`: last.pt and best.pt (lgf.training.checkpoint), eval/*.json (metrics of
each evaluation), log.jsonl, metrics.csv, training_curves.png, tensorboard/ (when asked), and
summary.json at the end. With `test_only` the run evaluates its starting weights (a checkpoint
to resume, `finetune_from`, `weights`) once and writes eval/test.json and summary.json only.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
import warnings
from typing import Any

import torch

from ..evaluation.area_ranges import area_protocol, check_metric
from ..evaluation.evaluate import evaluate
from ..modes import build_model
from ..regularizers import feature_enhancement_loss
from ..utils.atomic_write import atomic_copy, write_json
from ..utils.setting_errors import MissingPathError, SettingError
from ..utils.state_dicts import load_state_dict_checked
from ..utils.unwrap import unwrap
from . import distributed as du
from .checkpoint import load_checkpoint, primitive_args, save_checkpoint
from .config import TrainConfig
from .data_setup import build_datasets, build_loaders, resolve_data, resolve_num_classes
from .ema import ModelEMA
from .finetune import finetune_from_checkpoint
from .loop import AMP_DTYPES, EpochLimits, TrainState, TrainStep, steps_per_epoch, train_one_epoch
from .lr_schedule import build_scheduler
from .multiscale import MultiScale
from .optim import build_optimizer
from .output_dir import (
    BEST_CHECKPOINT,
    EVAL_DIR,
    LAST_CHECKPOINT,
    SUMMARY_FILE,
    OutputDirLock,
    claim_output_dir,
)
from .resume_check import check_resume_compatible
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .run_log import RunLogger
from .settings import check_combinations, resolve_amp
from .tensorboard_log import TensorBoardSink, require_tensorboard
from .threads import torch_threads

__all__ = ["Trainer", "check_resume_compatible"]


def _say(msg: str, info: du.DistInfo | None = None) -> None:
    if info is None or info.is_main:
        print(f"[lgf.train] {msg}", flush=True)


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM raises SystemExit(143) in the main thread while the run lasts, so the cleanup of
    every `finally` runs (temp files of atomic writes, the folder lock) as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """One training run. `run()` returns the summary dict (also written to summary.json)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.info: du.DistInfo | None = None
        self.device: torch.device | None = None
        self.lock: OutputDirLock | None = None
        self.logger: RunLogger | None = None
        self.init_report: dict[str, Any] | None = None  # what the starting weights were

    def run(self) -> dict[str, Any]:
        with _sigterm_raises():
            try:
                self._setup()
                return self._test_only() if self.config.test_only else self._loop()
            finally:
                if self.logger is not None:
                    self.logger.close()
                if self.lock is not None:
                    self.lock.release()
                du.cleanup()

    # ---- setup -------------------------------------------------------------------------------
    def _setup(self) -> None:
        self._setup_process()
        self._setup_data()
        self._setup_model()
        self._setup_step()
        self.state = TrainState()
        self.best = {"name": self.config.best_metric, "value": None, "epoch": None, "step": None}
        self.last_metrics = None
        self.resumed_from = self._resume()
        resume_step = self.state.step if self.resumed_from else None
        sinks = []
        if self.config.tensorboard and self.info.is_main:
            sinks.append(TensorBoardSink(self.config.output_dir, resume_step))
        self.logger = RunLogger(self.config.output_dir, self.info.is_main, resume_step, sinks=sinks)
        if self.init_report is not None:
            self.logger.log({"type": "init", "step": 0, **self.init_report})

    def _setup_process(self) -> None:
        c = self.config
        check_metric(c.best_metric, c.area_ranges)
        check_combinations(c)
        if c.tensorboard:
            require_tensorboard()
        if c.threads:
            torch.set_num_threads(c.threads)
        self.info, self.device = du.init_distributed(c.device, c.dist_url)
        c.amp = resolve_amp(c.amp, self.device)
        seed_everything(c.seed + self.info.rank)
        if c.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if c.resume and c.resume != "auto" and not os.path.isfile(c.resume):
            path = c.resume
            raise MissingPathError(lambda n: f"{n('resume')}: checkpoint not found: {path!r}")
        self._claim_output_dir()
        self.resume_path = self._resume_path()

    def _claim_output_dir(self) -> None:
        """Rank 0 locks and prepares the output folder (lgf.training.output_dir); every rank
        stops with its error when that fails."""
        c, error = self.config, None
        if self.info.is_main:
            try:
                self.lock = claim_output_dir(c.output_dir, c.resume, c.overwrite, _say)
            except SettingError as exc:
                error = exc
        message = du.broadcast_object(str(error) if error is not None else None)
        if error is not None:
            raise error
        if message is not None:
            raise SettingError(lambda n: f"rank 0 could not use the output folder: {message}")

    def _setup_data(self) -> None:
        c, info = self.config, self.info
        self.data_desc = resolve_data(c, info)
        self.train_set, self.val_set = build_datasets(c, info)
        resolve_num_classes(c, self.train_set)
        self.train_loader, self.val_loader = build_loaders(c, self.train_set, self.val_set, info)

    def _setup_model(self) -> None:
        c, info = self.config, self.info
        if c.sync_bn and info.distributed and self.device.type != "cuda":
            raise SettingError(
                lambda n: (
                    f"{n('sync_bn')} needs CUDA devices (SyncBatchNorm has no CPU implementation)"
                )
            )
        model = build_model(c)
        self._init_weights(model)
        model = model.to(self.device)
        if c.sync_bn and info.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.optimizer = build_optimizer(
            model, c.opt, c.lr, c.momentum, c.weight_decay, c.norm_weight_decay
        )
        self.model = model
        if info.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.ema = ModelEMA(model, c.ema_decay, c.ema_ramp) if c.ema else None

    def _init_weights(self, model: torch.nn.Module) -> None:
        """Fine-tunes from `finetune_from` (not when resuming: the checkpoint to resume holds the
        weights); records where the starting weights came from."""
        c = self.config
        if c.weights:
            self.init_report = {"weights": c.weights}
            _say(f"starting from torchvision's {c.detector} weights {c.weights}", self.info)
        if not c.finetune_from or self.resume_path:
            return
        if not os.path.isfile(c.finetune_from):
            path = c.finetune_from
            raise MissingPathError(
                lambda n: f"{n('finetune_from')}: checkpoint not found: {path!r}"
            )
        report = finetune_from_checkpoint(model, c.finetune_from, c.num_classes)
        self.init_report = {"finetune_from": c.finetune_from, **report.as_dict()}
        _say(f"fine-tuning: {report.summary()}", self.info)

    def _setup_step(self) -> None:
        c = self.config
        self.spe = steps_per_epoch(len(self.train_loader), c.accum_steps, c.iters_per_epoch)
        total = c.epochs * self.spe
        self.scheduler = build_scheduler(
            self.optimizer,
            total,
            c.lr_schedule,
            min(c.warmup_iters, total // 3),
            c.warmup_factor,
            [e * self.spe for e in c.lr_steps],
            c.lr_gamma,
            c.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=c.amp == "fp16")
        regularizer = None
        if c.feature_enhancement:
            regularizer = functools.partial(
                feature_enhancement_loss, lambda4=c.fe_lambda4, lambda2=c.fe_lambda2
            )
        self.limits = EpochLimits(
            max_iters=c.max_iters,
            iters_per_epoch=c.iters_per_epoch,
            log_every=c.log_every,
            progress=not c.no_progress and self.info.is_main,
        )
        self.step_parts = TrainStep(
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            device=self.device,
            accum_steps=c.accum_steps,
            amp_dtype=AMP_DTYPES[c.amp],
            clip_grad=c.clip_grad,
            ema=self.ema,
            regularizer=regularizer,
            multiscale=MultiScale(c.img_size, c.seed)
            if c.data_augmentation == "multiscale"
            else None,
        )

    # ---- resume ------------------------------------------------------------------------------
    def _resume_path(self) -> str | None:
        path = self.config.resume
        if path == "auto":
            path = os.path.join(self.config.output_dir, LAST_CHECKPOINT)
            if not os.path.isfile(path):
                _say(f"resume auto: no {path}, starting from scratch", self.info)
                return None
        return path or None

    def _resume(self) -> str | None:
        """Restores everything a checkpoint holds; returns its path (None: a fresh run)."""
        path = self.resume_path
        if path is None:
            return None
        ckpt = load_checkpoint(path)
        check_resume_compatible(ckpt["args"], self.config, path)
        saved_world = int(ckpt.get("world_size") or 1)
        if saved_world != self.info.world_size and ckpt.get("iter_in_epoch") and self.info.is_main:
            warnings.warn(
                f"{path} was written by {saved_world} processes and this run has "
                f"{self.info.world_size}: the rest of the interrupted epoch sees other images"
            )
        load_state_dict_checked(unwrap(self.model), ckpt["model"], repr(path))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self._resume_ema(ckpt, path)
        self.state.load_state_dict(ckpt)
        self.best = dict(ckpt.get("best") or self.best)
        self.last_metrics = ckpt.get("metrics")
        rng = ckpt.get("rng") or []
        if rng:
            restore_rng_state(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        st = self.state
        _say(
            f"resumed from {path}: {st.epoch} epochs + {st.iter_in_epoch} steps done "
            f"(step {st.step})",
            self.info,
        )
        return path

    def _resume_ema(self, ckpt: dict[str, Any], path: str) -> None:
        if self.ema is None:
            return
        if ckpt.get("ema"):
            load_state_dict_checked(self.ema.module, ckpt["ema"]["module"], f"{path!r} (EMA)")
            self.ema.load_state_dict(ckpt["ema"])
            return
        _say("the checkpoint has no EMA: starting the EMA from its weights", self.info)
        self.ema = ModelEMA(self.model, self.config.ema_decay, self.config.ema_ramp)
        self.step_parts.ema = self.ema

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint(self, metrics: dict | None = None) -> dict[str, Any]:
        return {
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            **self.state.state_dict(),
            "best": dict(self.best),
            "metrics": metrics if metrics is not None else self.last_metrics,
            "args": primitive_args(self.config),
            "label_to_cat_id": list(self.train_set.label_to_cat_id),
            "class_names": list(self.train_set.class_names),
            "world_size": self.info.world_size,
            "rng": None,
        }

    def save(self, metrics: dict | None = None, is_best: bool = False) -> None:
        """Writes last.pt (and best.pt) on rank 0. A collective: every rank must call it."""
        rng = du.all_gather_object(capture_rng_state())
        if self.info.is_main:
            ckpt = self._checkpoint(metrics)
            ckpt["rng"] = rng
            last = os.path.join(self.config.output_dir, LAST_CHECKPOINT)
            save_checkpoint(ckpt, last)
            if is_best:
                atomic_copy(last, os.path.join(self.config.output_dir, BEST_CHECKPOINT))
        du.barrier()

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self, tag: str | None = None) -> tuple[dict[str, Any], bool]:
        """Scores the EMA (else the model) on the validation set, with `eval_threads` CPU
        threads; returns (metrics, improved). Writes eval/<tag>.json (default: the epoch or
        step)."""
        c, st = self.config, self.state
        net = self.ema.module if self.ema is not None else unwrap(self.model)
        du.broadcast_buffers(net)
        with torch_threads(c.eval_threads):
            metrics = evaluate(
                net,
                self.val_loader,
                self.val_set.coco,
                self.train_set.label_to_cat_id,
                self.device,
                progress=not c.no_progress and self.info.is_main,
                area_ranges=c.area_ranges,
            )
        weights = "ema" if self.ema is not None else "model"
        metrics = {**metrics, "epoch": st.epoch, "step": st.step, "weights": weights}
        value = metrics.get(c.best_metric)
        improved = self.best["value"] is None or (value is not None and value > self.best["value"])
        if improved:
            self.best = {"name": c.best_metric, "value": value, "epoch": st.epoch, "step": st.step}
        if self.info.is_main:
            if tag is None:
                tag = f"epoch_{st.epoch:03d}" if st.iter_in_epoch == 0 else f"step_{st.step:07d}"
            write_json(metrics, os.path.join(c.output_dir, EVAL_DIR, f"{tag}.json"))
            self.logger.log({"type": "eval", **metrics})
            shown = area_protocol(c.area_ranges).headline_names
            _say("eval " + " ".join(f"{k}={metrics[k]:.4f}" for k in shown))
        self.last_metrics = metrics
        return metrics, improved

    # ---- main loop ---------------------------------------------------------------------------
    def _test_only(self) -> dict[str, Any]:
        """Evaluates the starting weights once; nothing is trained or saved but the metrics."""
        c = self.config
        if self.val_loader is None:
            raise SettingError(
                lambda n: (
                    f"{n('test_only')} needs a validation set ({n('val_img')}/{n('val_ann')}, or "
                    f"{n('data_path')} with val2017)"
                )
            )
        if not (self.resumed_from or c.finetune_from or c.weights):
            _say("test only: evaluating untrained weights (no checkpoint or weights given)")
        t0 = time.time()
        metrics, _ = self.evaluate(tag="test")
        summary = self._summary(time.time() - t0)
        summary.update(test_only=True, checkpoint=self.resumed_from)
        if self.info.is_main:
            write_json(summary, os.path.join(c.output_dir, "summary.json"))
        return summary

    def _loop(self) -> dict[str, Any]:
        c, st = self.config, self.state
        _say(
            f"mode={c.mode} backbone={c.backbone} insert_level={c.insert_level} gate={c.gate} "
            f"num_classes={c.num_classes} img_size={c.img_size} device={self.device} "
            f"world_size={self.info.world_size}; data: {self.data_desc}; "
            f"{len(self.train_set)} train images, {self.spe} steps/epoch",
            self.info,
        )
        t_start = time.time()
        stopped = bool(c.max_iters and st.step >= c.max_iters)
        while st.epoch < c.epochs and not stopped:
            out = self._train_epoch()
            stopped = bool(c.max_iters and st.step >= c.max_iters)
            self._end_epoch(out, stopped)
        summary = self._summary(time.time() - t_start)
        if self.info.is_main:
            write_json(summary, os.path.join(c.output_dir, SUMMARY_FILE))
        return summary

    def _on_step(self) -> None:
        every, st = self.config.save_every_iters, self.state
        if every and st.step % every == 0 and st.iter_in_epoch < self.spe:
            self.save()

    def _train_epoch(self) -> dict[str, Any]:
        c, st = self.config, self.state
        batches = self.train_loader.batch_sampler
        batches.set_epoch(st.epoch)
        batches.set_start(st.iter_in_epoch * c.accum_steps)
        out = train_one_epoch(
            self.step_parts,
            self.train_loader,
            st,
            st.epoch,
            self.limits,
            logger=self.logger,
            on_step=self._on_step,
        )
        batches.set_start(0)
        if out["epoch_done"] or st.iter_in_epoch >= self.spe:
            st.epoch += 1
            st.iter_in_epoch = 0
        return out

    def _end_epoch(self, out: dict[str, Any], stopped: bool) -> None:
        """Logs the epoch, evaluates when due, saves the checkpoints and the logs."""
        c, st = self.config, self.state
        lr = self.optimizer.param_groups[0]["lr"]
        losses = {k: v for k, v in out.items() if k.startswith("loss")}
        dropped = sum(du.all_gather_object(out["dropped_boxes"]))
        record = {"type": "epoch", "epoch": st.epoch, "step": st.step, "lr": lr}
        self.logger.log({**record, "epoch_time": out["time"], **losses, "dropped_boxes": dropped})
        final = stopped or st.epoch >= c.epochs
        due = c.eval_every and (st.epoch % c.eval_every == 0 and st.iter_in_epoch == 0 or final)
        metrics, improved = None, False
        if self.val_loader is not None and due:
            metrics, improved = self.evaluate()
        self.save(metrics, is_best=improved)
        if self.info.is_main:
            self.logger.write_csv()
            self.logger.plot()
        note = " [stopped by max_iters]" if stopped and st.epoch < c.epochs else ""
        if dropped:
            note += f"; {dropped} boxes dropped by the {c.data_augmentation} augmentation"
        _say(
            f"epoch {st.epoch}/{c.epochs} step {st.step} loss {out.get('loss', float('nan')):.4f} "
            f"({out['time']:.1f}s){note}",
            self.info,
        )

    def _summary(self, seconds: float) -> dict[str, Any]:
        st, out_dir = self.state, os.path.abspath(self.config.output_dir)
        return {
            "output_dir": out_dir,
            "epochs_done": st.epoch,
            "iter_in_epoch": st.iter_in_epoch,
            "step": st.step,
            "best": self.best,
            "metrics": self.last_metrics,
            "time": seconds,
            "last_checkpoint": os.path.join(out_dir, LAST_CHECKPOINT),
            "best_checkpoint": (
                os.path.join(out_dir, BEST_CHECKPOINT) if self.best["value"] is not None else None
            ),
            "init": self.init_report,
        }
