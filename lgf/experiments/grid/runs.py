"""One run of a grid: its training subprocess, its recorded flags, and its finished-run marker.

Finished-run marker: `RUN_DIR/result_<select>.json` (`result_file`), written atomically after
the run's training ended and its selected checkpoint was scored on every requested split; it is
read by `read_result` and judged by `is_finished`, nowhere else. A run without it is resumed
(the trainer's resume "auto") or only re-scored if its training already ended.

Model selection (`select`): "best" = the trainer's best.pt (best validation value of its best
metric over the evaluations of the run); "last" = last.pt (the end of training).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...evaluation import evaluate_checkpoint
from ...training.config import RUNTIME_FIELDS, TrainConfig
from ...utils.atomic_write import write_json
from ...utils.setting_errors import SettingError
from .plan import RunSpec

__all__ = [
    "SELECTIONS",
    "RUN_CONFIG",
    "TrainingCommand",
    "train_command",
    "check_run_config",
    "training_finished",
    "run_training",
    "result_file",
    "read_result",
    "is_finished",
    "score_run",
]

SELECTIONS = ("best", "last")
RUN_CONFIG = "grid_run.json"  # the run's spec and training flags, written at its first start

# split -> (images folder, COCO JSON) of every set a run is scored on
EvalSets = Mapping[str, tuple[str, str]]


@dataclasses.dataclass
class TrainingCommand:
    """How the grid starts one training run: `python -m MODULE <flags>`, in `cwd`."""

    module: str  # the training command's module, e.g. "train.train"
    flags: list[str]  # training flags passed to every run
    config: TrainConfig  # `flags` parsed (epochs, max_iters, synthetic set, image size)
    parse: Callable[[list[str]], TrainConfig]  # training flags -> settings
    cwd: str | None = None


def train_command(
    training: TrainingCommand, spec: RunSpec, dataset: Mapping[str, Any], run_dir: str
) -> list[str]:
    """The argv of one run: data, mode, level, seed, output dir and resume set by the grid."""
    cmd = [sys.executable, "-m", training.module]
    cmd += ["--train-img", dataset["train_img"], "--train-ann", dataset["train_ann"]]
    cmd += ["--val-img", dataset["val_img"], "--val-ann", dataset["val_ann"]]
    cmd += ["--mode", spec.mode, "--insert-level", spec.insert_level, "--seed", str(spec.seed)]
    cmd += ["--output-dir", run_dir, "--resume", "auto"]
    cmd += list(dataset["extra"]) + list(training.flags)
    if "--no-progress" not in training.flags:
        cmd.append("--no-progress")
    return cmd


def _result_settings(config: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in vars(config).items() if k not in RUNTIME_FIELDS}


def check_run_config(
    run_dir: str, spec: RunSpec, train_argv: list[str], training: TrainingCommand
) -> None:
    """Records the run's training flags, or refuses a run directory made with other flags
    (flags in lgf.training.config.RUNTIME_FIELDS may differ)."""
    path = os.path.join(run_dir, RUN_CONFIG)
    if not os.path.isfile(path):
        write_json({"spec": dataclasses.asdict(spec), "train_argv": train_argv}, path)
        return
    with open(path, "r", encoding="utf-8") as f:
        old = json.load(f)
    before = _result_settings(training.parse(old["train_argv"]))
    now = _result_settings(training.parse(train_argv))
    diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if diff:
        changes = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise SettingError(
            lambda n: (
                f"{run_dir} was trained with other training flags ({changes}); "
                f"use a new {n('out')} or delete that run directory"
            )
        )


def _summary(run_dir: str) -> dict[str, Any] | None:
    path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(path):
        return None
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def training_finished(run_dir: str, config: TrainConfig) -> bool:
    """True when the run's summary.json says it reached config's epochs or max_iters."""
    s = _summary(run_dir)
    if s is None:
        return False
    return s.get("epochs_done", 0) >= config.epochs or bool(
        config.max_iters and s.get("step", 0) >= config.max_iters
    )


def run_training(cmd: list[str], run_dir: str, cwd: str | None = None) -> int:
    """Runs one training subprocess, its output appended to RUN_DIR/train.log; returns its exit
    code."""
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "train.log"), "a", encoding="utf-8") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        return subprocess.call(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def result_file(run_dir: str, select: str) -> str:
    """Path of the run's finished-run marker for `select`."""
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    return os.path.join(run_dir, f"result_{select}.json")


def read_result(run_dir: str, select: str) -> dict[str, Any] | None:
    """The run's result dict for `select`, or None if the run is not finished (no readable
    marker)."""
    path = result_file(run_dir, select)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def is_finished(run_dir: str, select: str, eval_sets: EvalSets, area_ranges: str = "coco") -> bool:
    """True when the marker covers every split of `eval_sets`, scored from the same files with
    the area protocol `area_ranges`."""
    r = read_result(run_dir, select)
    if r is None or r.get("area_ranges", "coco") != area_ranges:
        return False
    sources = r.get("sources", {})
    return all(
        split in r.get("splits", {}) and sources.get(split) == {"img": img, "ann": ann}
        for split, (img, ann) in eval_sets.items()
    )


def _selected_checkpoint(run_dir: str, summary: dict[str, Any], select: str) -> tuple[str, int]:
    if select == "best":
        if (summary.get("best") or {}).get("value") is None:
            raise SettingError(
                lambda n: (
                    f"{run_dir}: {n('select')} best but the run has no evaluation (best.pt); use "
                    f"{n('select')} last or let the trainer evaluate ({n('eval_every')})"
                )
            )
        ckpt, step = os.path.join(run_dir, "best.pt"), summary["best"]["step"]
    else:
        ckpt, step = os.path.join(run_dir, "last.pt"), summary["step"]
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"{run_dir}: selected checkpoint {ckpt!r} is missing")
    return ckpt, step


def _val_metrics_from_logs(run_dir: str, summary: dict[str, Any], select: str):
    """The validation metrics the trainer already computed for the selected checkpoint, or None."""
    if select == "last":
        m = summary.get("metrics")
        return m if m and m.get("step") == summary.get("step") else None
    step = (summary.get("best") or {}).get("step")
    for path in sorted(glob.glob(os.path.join(run_dir, "eval", "*.json"))):
        with open(path, "r", encoding="utf-8") as f:
            m = json.load(f)
        if m.get("step") == step:
            return m
    return None


def score_run(
    spec: RunSpec,
    run_dir: str,
    select: str,
    eval_sets: EvalSets,
    eval_kw: Mapping[str, Any],
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Scores the selected checkpoint on every eval set (reusing the splits of an older result of
    the same checkpoint and the trainer's own validation metrics); writes and returns the result
    dict, the finished-run marker."""
    summary = _summary(run_dir)
    if summary is None:
        raise FileNotFoundError(f"{run_dir}: no summary.json, the run's training has not ended")
    ckpt, step = _selected_checkpoint(run_dir, summary, select)
    areas = eval_kw.get("area_ranges", "coco")
    old = read_result(run_dir, select) or {}
    reuse = old.get("checkpoint_step") == step and old.get("area_ranges", "coco") == areas
    splits, sources = {}, {}
    for split, (img, ann) in eval_sets.items():
        src = {"img": img, "ann": ann}
        logged = _val_metrics_from_logs(run_dir, summary, select) if split == "val" else None
        if logged is not None and logged.get("area_ranges", "coco") != areas:
            logged = None  # the trainer scored other buckets
        if reuse and old.get("sources", {}).get(split) == src and split in old.get("splits", {}):
            splits[split] = old["splits"][split]
        elif logged is not None:
            splits[split] = logged
        else:
            say(f"  scoring {spec.name} ({select}) on {split}")
            splits[split] = evaluate_checkpoint(ckpt, img, ann, **eval_kw)
        sources[split] = src
    result = {
        **dataclasses.asdict(spec),
        "select": select,
        "area_ranges": areas,
        "checkpoint": ckpt,
        "checkpoint_step": step,
        "splits": splits,
        "sources": sources,
        "train": {k: summary.get(k) for k in ("epochs_done", "step", "time", "best")},
    }
    write_json(result, result_file(run_dir, select))
    return result
