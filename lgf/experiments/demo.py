"""The demo: RetinaNet without and with the LGF block on the synthetic small-object set, over
several seeds, with mean +- std and a paired test of the difference (README, Demo).

Each (mode, seed) run trains from scratch on the same generated data set (`data_seed`); the seed
changes the initial weights, the batch order and the augmentation. Runs are deterministic for a
given seed on a given machine: fixed thread count, deterministic algorithms, per-sample seeds.
Other machines may print other numbers (other SIMD paths, thread counts or library versions
round floats differently, and a from-scratch run amplifies such differences), which is why the
table reports the spread over seeds and says whether a difference exceeds it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..counting import count_params
from ..data import generate_synthetic_coco
from ..modes import build_model
from ..training.config import TrainConfig
from ..training.trainer import Trainer

__all__ = ["DemoSettings", "ROWS", "paired_test", "run_demo", "format_report"]

ROWS = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AR100", "AR_small")

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (any statistics table);
# beyond 30 the normal quantile 1.96, within 4% of t's.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass
class DemoSettings:
    """Every setting of the demo and its default: 2 modes x 3 seeds of 160 steps each, about
    18 minutes of one core (measured: 183 s of CPU time per run, single-threaded), so about 12
    minutes with the two threads on two idle cores (README, Demo)."""

    output_dir: str = "runs/demo"
    modes: list[str] = field(default_factory=lambda: ["baseline", "lgf"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    backbone: str = "resnet18"
    epochs: int = 5
    img_size: int = 96
    num_train: int = 128
    num_val: int = 32
    batch_size: int = 4
    lr: float = 5e-4
    warmup_iters: int = 30
    data_seed: int = 0
    threads: int = 2
    workers: int = 1
    device: str = "cpu"
    no_progress: bool = False


def _config(s: DemoSettings, mode: str, seed: int, data: dict[str, str]) -> TrainConfig:
    return TrainConfig(
        **{k: data[k] for k in ("train_img", "train_ann", "val_img", "val_ann")},
        output_dir=os.path.join(s.output_dir, mode, f"seed{seed}"),
        overwrite=True,  # the demo always trains afresh: its table comes from this run
        mode=mode,
        backbone=s.backbone,
        img_size=s.img_size,
        anchor_sizes=[16, 32, 64, 128, 256],
        epochs=s.epochs,
        batch_size=s.batch_size,
        opt="adamw",
        lr=s.lr,
        warmup_iters=s.warmup_iters,
        clip_grad=10.0,
        eval_every=s.epochs,
        seed=seed,
        workers=s.workers,
        device=s.device,
        threads=s.threads,
        deterministic=True,
        no_progress=s.no_progress,
    )


def run_demo(s: DemoSettings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Trains every mode for every seed (seed by seed, so an interrupted demo has pairs);
    returns {"settings", "runs": [{mode, seed, metrics, train_s}], "params_M", "wall_s"}."""
    t0 = time.time()
    data = generate_synthetic_coco(
        os.path.join(s.output_dir, "data"),
        num_train=s.num_train,
        num_val=s.num_val,
        image_size=s.img_size,
        seed=s.data_seed,
    )
    runs, params = [], {}
    for seed in s.seeds:
        for mode in s.modes:
            say(f"=== {mode}, seed {seed} ({s.backbone}, {s.img_size} px, {s.epochs} epochs) ===")
            config = _config(s, mode, seed, data)
            t = time.time()
            summary = Trainer(config).run()
            runs.append(
                {
                    "mode": mode,
                    "seed": seed,
                    "metrics": summary["metrics"],
                    "train_s": time.time() - t,
                }
            )
            if mode not in params:
                params[mode] = count_params(build_model(config)) / 1e6
    return {"settings": vars(s), "runs": runs, "params_M": params, "wall_s": time.time() - t0}


def paired_test(base: Sequence[float], other: Sequence[float]) -> dict[str, Any]:
    """Paired t-test over seeds of other - base: mean and std of the differences, t, the 95%
    two-sided critical value, and whether |t| exceeds it (None with fewer than two seeds)."""
    diffs = [o - b for b, o in zip(base, other)]
    n = len(diffs)
    mean = statistics.fmean(diffs)
    out = {"diffs": diffs, "mean": mean, "n": n, "std": None, "t": None, "t_crit": None}
    if n < 2:
        return {**out, "larger": None}
    std = statistics.stdev(diffs)
    t = mean / (std / math.sqrt(n)) if std > 0 else (math.inf if mean else 0.0)
    t_crit = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return {**out, "std": std, "t": t, "t_crit": t_crit, "larger": abs(t) > t_crit}


def _values(results: dict[str, Any], mode: str, key: str) -> list[float]:
    runs = sorted((r for r in results["runs"] if r["mode"] == mode), key=lambda r: r["seed"])
    return [float(r["metrics"][key]) for r in runs]


def _cell(values: Sequence[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def _table(results: dict[str, Any], modes: list[str]) -> list[str]:
    base = modes[0]
    head = ["metric"] + modes + [f"{m} − {base}" for m in modes[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for key in ROWS:
        cols = [_cell(_values(results, m, key)) for m in modes]
        for m in modes[1:]:
            t = paired_test(_values(results, base, key), _values(results, m, key))
            cols.append(
                f"{t['mean']:+.4f}" + (f" ± {t['std']:.4f}" if t["std"] is not None else "")
            )
        lines.append(f"| {key} | " + " | ".join(cols) + " |")
    params = results["params_M"]
    cells = [f"{params[m]:.3f}" for m in modes] + [
        f"{params[m] - params[base]:+.3f}" for m in modes[1:]
    ]
    lines.append("| params (M) | " + " | ".join(cells) + " |")
    return lines


def _conclusion(results: dict[str, Any], base: str, mode: str) -> str:
    a, b = _values(results, base, "AP"), _values(results, mode, "AP")
    t = paired_test(a, b)
    per_seed = ", ".join(f"{d:+.4f}" for d in t["diffs"])
    head = f"{mode} − {base} AP: {t['mean']:+.4f} (per seed {per_seed})"
    if t["larger"] is None:
        return f"{head}. One seed: no spread to compare with, so this says nothing about {mode}."
    verdict = "larger" if t["larger"] else "NOT larger"
    return (
        f"{head}; paired t-test over {t['n']} seeds: t = {t['t']:.2f}, |t| > {t['t_crit']:.2f} "
        f"needed at 95% ({t['n'] - 1} degrees of freedom). The difference is {verdict} than "
        "the seed-to-seed spread."
    )


def format_report(results: dict[str, Any]) -> str:
    """The table (mean ± std over seeds; differences paired by seed) and the conclusions.
    Only numbers that a rerun reproduces: no timings."""
    s = results["settings"]
    modes = list(s["modes"])
    lines = [
        f"Synthetic small-object set: {s['num_train']} train / {s['num_val']} val images of "
        f"{s['img_size']} px (data seed {s['data_seed']}); {s['backbone']}, {s['epochs']} epochs, "
        f"seeds {', '.join(map(str, s['seeds']))}; COCO metrics on the val set, mean ± std over "
        "seeds (sample std); differences paired by seed.",
        "",
        *_table(results, modes),
        "",
    ]
    lines += [_conclusion(results, modes[0], m) for m in modes[1:]]
    return "\n".join(lines)
