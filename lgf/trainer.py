"""The training driver behind `python -m train.train`: data, model, loop, evaluation, checkpoints.

Outputs in --output-dir: last.pt and best.pt (see lgf.checkpoint), eval/*.json (metrics of each
evaluation), log.jsonl, metrics.csv, training_curves.png, and summary.json at the end.
"""

import functools
import os
import random
import sys
import time
import warnings

import numpy as np
import torch

from . import distributed as du
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    atomic_copy,
    atomic_torch_save,
    capture_rng_state,
    load_checkpoint,
    primitive_args,
    remove_stale_temp_files,
    restore_rng_state,
)
from .data import (
    CocoDetection,
    DatasetError,
    build_transforms,
    generate_synthetic_coco,
    make_loader,
)
from .ema import ModelEMA, unwrap
from .engine import (
    MODEL_ARGS,
    NonFiniteLossError,
    TrainState,
    build_model,
    build_optimizer,
    steps_per_epoch,
    train_one_epoch,
)
from .evaluation import evaluate, write_metrics_json
from .logging_utils import RunLogger
from .lr_schedule import build_scheduler
from .options import build_train_parser
from .regularizers import feature_enhancement_loss

AMP_DTYPES = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _say(msg, info=None):
    if info is None or info.is_main:
        print(f"[lgf.train] {msg}", flush=True)


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_data(args, info):
    """Fills in the data paths (generating the synthetic set when no data flag is given) and the
    default image size. Returns a short description of the data."""
    flags = (args.train_img, args.train_ann, args.val_img, args.val_ann)
    if not any(flags):
        root = args.synthetic_dir or os.path.join(args.output_dir, "synthetic_data")
        spec = dict(
            num_train=args.synthetic_train,
            num_val=args.synthetic_val,
            image_size=args.synthetic_size,
            seed=0,
        )
        if info.is_main:
            generate_synthetic_coco(root, **spec)
        du.barrier()
        paths = generate_synthetic_coco(root, **spec)  # the other ranks find it made
        args.train_img, args.train_ann = paths["train_img"], paths["train_ann"]
        args.val_img, args.val_ann = paths["val_img"], paths["val_ann"]
        if args.img_size is None:
            args.img_size = args.synthetic_size
        return f"synthetic set in {root}"
    if bool(args.train_img) != bool(args.train_ann):
        raise ValueError("--train-img and --train-ann must be given together")
    if bool(args.val_img) != bool(args.val_ann):
        raise ValueError("--val-img and --val-ann must be given together")
    if not args.train_img:
        raise ValueError("--val-img/--val-ann given without --train-img/--train-ann")
    if args.img_size is None:
        args.img_size = 640
    return f"train {args.train_ann}" + (
        f", val {args.val_ann}" if args.val_ann else " (no validation set)"
    )


def check_resume_compatible(ckpt_args: dict, args, path):
    for key in MODEL_ARGS:
        old, new = ckpt_args.get(key), getattr(args, key)
        if old != new:
            flag = "--" + key.replace("_", "-")
            raise ValueError(
                f"--resume {path!r}: the checkpoint was trained with {flag} {old} "
                f"but this run has {flag} {new}; use the same model settings"
            )


class Trainer:
    """One training run. `run()` returns the summary dict (also written to summary.json)."""

    def __init__(self, args):
        self.args = args
        self.info = None
        self.device = None

    # ---- setup -------------------------------------------------------------------------------
    def _setup(self):
        a = self.args
        if a.threads:
            torch.set_num_threads(a.threads)
        self.info, self.device = du.init_distributed(a.device, a.dist_url)
        info = self.info
        seed_everything(a.seed + info.rank)
        if a.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        if a.resume and a.resume != "auto" and not os.path.isfile(a.resume):
            raise FileNotFoundError(f"--resume: checkpoint not found: {a.resume!r}")
        if info.is_main:
            os.makedirs(a.output_dir, exist_ok=True)
            for name in remove_stale_temp_files(a.output_dir):
                _say(f"removed a temp file left by an interrupted write: {name}")
        self.data_desc = resolve_data(a, info)

        self.train_set = CocoDetection(
            a.train_img,
            a.train_ann,
            build_transforms(True, a.hflip),
            max_images=a.max_images or None,
            name="train",
        )
        self.val_set = None
        if a.val_img:
            self.val_set = CocoDetection(
                a.val_img,
                a.val_ann,
                build_transforms(False),
                max_images=a.max_val_images or None,
                name="val",
            )
            missing = set(self.val_set.coco.getCatIds()) - set(self.train_set.label_to_cat_id[1:])
            if missing and info.is_main:
                warnings.warn(
                    f"categories {sorted(missing)} of {a.val_ann} are not in {a.train_ann}: "
                    "the model cannot detect them"
                )
        derived = self.train_set.num_classes
        if a.num_classes is None:
            a.num_classes = derived
        elif a.num_classes < derived:
            raise ValueError(
                f"--num-classes {a.num_classes} is too small: {a.train_ann} has "
                f"{derived - 1} categories, which need num_classes >= {derived}"
            )
        self.train_loader = make_loader(
            self.train_set,
            a.batch_size,
            train=True,
            seed=a.seed,
            rank=info.rank,
            world_size=info.world_size,
            workers=a.workers,
        )
        self.val_loader = None
        if self.val_set is not None:
            self.val_loader = make_loader(
                self.val_set,
                a.eval_batch_size or a.batch_size,
                train=False,
                rank=info.rank,
                world_size=info.world_size,
                workers=a.workers,
            )

        if a.sync_bn and info.distributed and self.device.type != "cuda":
            raise ValueError(
                "--sync-bn needs CUDA devices (SyncBatchNorm has no CPU implementation)"
            )
        model = build_model(a).to(self.device)
        if a.sync_bn and info.distributed:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.optimizer = build_optimizer(model, a.opt, a.lr, a.momentum, a.weight_decay)
        self.model = model
        if info.distributed:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.spe = steps_per_epoch(len(self.train_loader), a.accum_steps, a.iters_per_epoch)
        total = a.epochs * self.spe
        warmup = min(a.warmup_iters, total // 3)
        self.scheduler = build_scheduler(
            self.optimizer,
            total,
            a.lr_schedule,
            warmup,
            a.warmup_factor,
            [e * self.spe for e in a.lr_steps],
            a.lr_gamma,
            a.min_lr_ratio,
        )
        self.amp_dtype = AMP_DTYPES[a.amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=a.amp == "fp16")
        self.ema = ModelEMA(model, a.ema_decay, a.ema_ramp) if a.ema else None
        self.regularizer = None
        if getattr(a, "feature_enhancement", False):
            self.regularizer = functools.partial(
                feature_enhancement_loss, lambda4=a.fe_lambda4, lambda2=a.fe_lambda2
            )
        self.state = TrainState()
        self.best = {"name": a.best_metric, "value": None, "epoch": None, "step": None}
        self.last_metrics = None
        self._resume()
        self.logger = RunLogger(
            a.output_dir,
            enabled=info.is_main,
            resume_step=self.state.step if self.resumed_from else None,
        )

    def _resume(self):
        a = self.args
        self.resumed_from = None
        path = a.resume
        if not path:
            return
        if path == "auto":
            path = os.path.join(a.output_dir, "last.pt")
            if not os.path.isfile(path):
                _say(f"--resume auto: no {path}, starting from scratch", self.info)
                return
        ckpt = load_checkpoint(path)
        check_resume_compatible(ckpt["args"], a, path)
        saved_world = int(ckpt.get("world_size") or 1)
        if saved_world != self.info.world_size and ckpt.get("iter_in_epoch") and self.info.is_main:
            warnings.warn(
                f"{path} was written by {saved_world} processes and this run has "
                f"{self.info.world_size}: the rest of the interrupted epoch sees other images"
            )
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None:
            if ckpt.get("ema"):
                self.ema.load_state_dict(ckpt["ema"])
            else:
                _say("the checkpoint has no EMA: starting the EMA from its weights", self.info)
                self.ema = ModelEMA(self.model, a.ema_decay, a.ema_ramp)
        self.state.load_state_dict(ckpt)
        self.best = dict(ckpt.get("best") or self.best)
        self.last_metrics = ckpt.get("metrics")
        rng = ckpt.get("rng") or []
        if rng:
            restore_rng_state(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        self.resumed_from = path
        _say(
            f"resumed from {path}: {self.state.epoch} epochs + {self.state.iter_in_epoch} steps done "
            f"(step {self.state.step})",
            self.info,
        )

    # ---- checkpoints -------------------------------------------------------------------------
    def _checkpoint(self, metrics=None):
        return {
            "format_version": FORMAT_VERSION,
            "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.state.epoch,
            "iter_in_epoch": self.state.iter_in_epoch,
            "step": self.state.step,
            "best": dict(self.best),
            "metrics": metrics if metrics is not None else self.last_metrics,
            "args": primitive_args(self.args),
            "label_to_cat_id": list(self.train_set.label_to_cat_id),
            "class_names": list(self.train_set.class_names),
            "world_size": self.info.world_size,
            "rng": None,
        }

    def save(self, metrics=None, is_best=False):
        """Writes last.pt (and best.pt) on rank 0. A collective: every rank must call it."""
        rng = du.all_gather_object(capture_rng_state())
        if self.info.is_main:
            ckpt = self._checkpoint(metrics)
            ckpt["rng"] = rng
            last = os.path.join(self.args.output_dir, "last.pt")
            atomic_torch_save(ckpt, last)
            if is_best:
                atomic_copy(last, os.path.join(self.args.output_dir, "best.pt"))
        du.barrier()

    # ---- evaluation --------------------------------------------------------------------------
    def evaluate(self):
        a = self.args
        net = self.ema.module if self.ema is not None else unwrap(self.model)
        du.broadcast_buffers(net)
        metrics = evaluate(
            net,
            self.val_loader,
            self.val_set.coco,
            self.train_set.label_to_cat_id,
            self.device,
            progress=not a.no_progress and self.info.is_main,
        )
        metrics = dict(metrics)
        metrics.update(
            {
                "epoch": self.state.epoch,
                "step": self.state.step,
                "weights": "ema" if self.ema is not None else "model",
            }
        )
        value = metrics.get(a.best_metric)
        improved = self.best["value"] is None or (value is not None and value > self.best["value"])
        if improved:
            self.best = {
                "name": a.best_metric,
                "value": value,
                "epoch": self.state.epoch,
                "step": self.state.step,
            }
        if self.info.is_main:
            tag = (
                f"epoch_{self.state.epoch:03d}"
                if self.state.iter_in_epoch == 0
                else f"step_{self.state.step:07d}"
            )
            write_metrics_json(metrics, os.path.join(a.output_dir, "eval", f"{tag}.json"))
            self.logger.log({"type": "eval", **metrics})
            _say(
                "eval "
                + " ".join(
                    f"{k}={metrics[k]:.4f}"
                    for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100")
                )
            )
        self.last_metrics = metrics
        return metrics, improved

    # ---- main loop ---------------------------------------------------------------------------
    def run(self):
        try:
            self._setup()
            return self._loop()
        finally:
            du.cleanup()

    def _loop(self):
        a, info, st = self.args, self.info, self.state
        _say(
            f"mode={a.mode} backbone={a.backbone} insert_level={a.insert_level} gate={a.gate} "
            f"num_classes={a.num_classes} img_size={a.img_size} device={self.device} "
            f"world_size={info.world_size}; data: {self.data_desc}; "
            f"{len(self.train_set)} train images, {self.spe} steps/epoch",
            info,
        )
        sampler = self.train_loader.sampler
        t_start = time.time()
        stopped = bool(a.max_iters and st.step >= a.max_iters)
        while st.epoch < a.epochs and not stopped:
            sampler.set_epoch(st.epoch)
            sampler.set_start(st.iter_in_epoch * a.accum_steps * a.batch_size)

            def on_step():
                if (
                    a.save_every_iters
                    and st.step % a.save_every_iters == 0
                    and st.iter_in_epoch < self.spe
                ):
                    self.save()

            out = train_one_epoch(
                self.model,
                self.optimizer,
                self.scheduler,
                self.scaler,
                self.train_loader,
                self.device,
                st,
                epoch=st.epoch,
                accum_steps=a.accum_steps,
                amp_dtype=self.amp_dtype,
                clip_grad=a.clip_grad,
                ema=self.ema,
                max_iters=a.max_iters,
                iters_per_epoch=a.iters_per_epoch,
                log_every=a.log_every,
                logger=self.logger,
                progress=not a.no_progress and info.is_main,
                on_step=on_step,
                regularizer=self.regularizer,
            )
            sampler.set_start(0)
            if out["epoch_done"] or st.iter_in_epoch >= self.spe:
                st.epoch += 1
                st.iter_in_epoch = 0
            stopped = bool(a.max_iters and st.step >= a.max_iters)
            self.logger.log(
                {
                    "type": "epoch",
                    "epoch": st.epoch,
                    "step": st.step,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "epoch_time": out["time"],
                    **{k: v for k, v in out.items() if k.startswith("loss")},
                }
            )
            metrics, improved = None, False
            final = stopped or st.epoch >= a.epochs
            if (
                self.val_loader is not None
                and a.eval_every
                and (st.epoch % a.eval_every == 0 and st.iter_in_epoch == 0 or final)
            ):
                metrics, improved = self.evaluate()
            self.save(metrics, is_best=improved)
            if info.is_main:
                self.logger.write_csv()
                self.logger.plot()
            note = " [stopped by --max-iters]" if stopped and st.epoch < a.epochs else ""
            _say(
                f"epoch {st.epoch}/{a.epochs} step {st.step} loss {out.get('loss', float('nan')):.4f} "
                f"({out['time']:.1f}s){note}",
                info,
            )
        summary = {
            "output_dir": os.path.abspath(a.output_dir),
            "epochs_done": st.epoch,
            "iter_in_epoch": st.iter_in_epoch,
            "step": st.step,
            "best": self.best,
            "metrics": self.last_metrics,
            "time": time.time() - t_start,
            "last_checkpoint": os.path.join(os.path.abspath(a.output_dir), "last.pt"),
            "best_checkpoint": (
                os.path.join(os.path.abspath(a.output_dir), "best.pt")
                if self.best["value"] is not None
                else None
            ),
        }
        if info.is_main:
            write_metrics_json(summary, os.path.join(a.output_dir, "summary.json"))
        return summary


def run(args):
    """Trains with parsed arguments (an argparse.Namespace from build_train_parser)."""
    return Trainer(args).run()


def parse_args(argv=None):
    return build_train_parser().parse_args(argv)


def main(argv=None):
    """Command-line entry point; bad input and a non-finite loss exit with a message, not a traceback."""
    args = parse_args(argv)
    try:
        run(args)
    except (
        NonFiniteLossError,
        DatasetError,
        CheckpointError,
        FileNotFoundError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2 if not isinstance(exc, NonFiniteLossError) else 3)
    return 0
