"""The grid driver: train every planned run, score it, then write the mean +- std tables.

Runs go one after the other, each a training subprocess in its own directory; a restarted grid
skips finished runs (lgf.experiments.grid.runs) and resumes the others. Weather sets of each
dataset's val split (each condition at each severity; the first --max-val-images images when the
runs validate on those, so clean and corrupted numbers cover the same images) are made once under
OUT/_weather/<dataset>/seed<weather seed>/ with lgf.experiments.weather_sets. Every evaluation
uses the runs' area protocol (their --area-ranges). Tables: OUT/results_<select>.md and
OUT/results_<select>.csv.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...utils.atomic_write import write_text
from ...utils.setting_errors import Namer, worded
from ..weather_sets import make_weather_set, weather_set_paths, weather_split_name
from .plan import RunSpec, group_order
from .runs import (
    TrainingCommand,
    check_run_config,
    is_finished,
    read_result,
    run_training,
    score_run,
    train_command,
    training_finished,
)
from .tables import build_report, report_metrics, write_csv

__all__ = ["Grid", "describe_plan", "run_grid", "finished_results", "write_tables"]

Say = Callable[[str], None]


@dataclass
class Grid:
    """A planned grid: where it lives, what it runs, how runs are scored and reported."""

    out_root: str
    datasets: list[dict[str, Any]]  # from lgf.experiments.grid.datasets.resolve_datasets
    plan: list[RunSpec]
    training: TrainingCommand
    select: str = "best"
    conditions: tuple[str, ...] = ()  # weather conditions scored on val
    weather_severities: tuple[int, ...] = (3,)
    weather_seed: int = 0
    eval_kw: dict[str, Any] = field(default_factory=dict)  # evaluate_checkpoint arguments
    digits: int = 2
    stop_on_error: bool = False

    @property
    def weather_splits(self) -> list[str]:
        return [weather_split_name(c, s) for c in self.conditions for s in self.weather_severities]

    @property
    def area_ranges(self) -> str:
        """The runs' area protocol (their --area-ranges), used by every evaluation."""
        return self.training.config.area_ranges

    def dataset(self, name: str) -> dict[str, Any]:
        return next(d for d in self.datasets if d["name"] == name)

    def weather_root(self, dataset: dict[str, Any]) -> str:
        return os.path.join(self.out_root, "_weather", dataset["name"], f"seed{self.weather_seed}")

    def eval_sets(self, dataset: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """split -> (images folder, COCO JSON) of every set a run of `dataset` is scored on."""
        sets = {"val": (dataset["val_img"], dataset["val_ann"])}
        if dataset["test_img"]:
            sets["test"] = (dataset["test_img"], dataset["test_ann"])
        for c in self.conditions:
            for sev in self.weather_severities:
                paths = weather_set_paths(self.weather_root(dataset), c, sev)
                sets[weather_split_name(c, sev)] = (paths["img_dir"], paths["ann_file"])
        return sets

    def run_dir(self, spec: RunSpec) -> str:
        return spec.run_dir(self.out_root)


def describe_plan(grid: Grid) -> list[str]:
    """One line per run: finished or to run, its directory, and its training command."""
    lines = []
    for spec in grid.plan:
        ds, run_dir = grid.dataset(spec.dataset), grid.run_dir(spec)
        done = is_finished(run_dir, grid.select, grid.eval_sets(ds), grid.area_ranges)
        cmd = " ".join(train_command(grid.training, spec, ds, run_dir))
        lines.append(f"{'finished' if done else 'to run':9s} {run_dir}\n          {cmd}")
    return lines


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _train(grid: Grid, spec: RunSpec, tag: str, say: Say) -> bool:
    """Trains the run unless its training already ended; False when it failed."""
    run_dir = grid.run_dir(spec)
    if training_finished(run_dir, grid.training.config):
        return True
    say(f"{tag}: training (log: {os.path.join(run_dir, 'train.log')})")
    t0 = time.time()
    cmd = train_command(grid.training, spec, grid.dataset(spec.dataset), run_dir)
    code = run_training(cmd, run_dir, grid.training.cwd)
    if code != 0 or not training_finished(run_dir, grid.training.config):
        log = _tail(os.path.join(run_dir, "train.log"))
        say(f"{tag}: FAILED (exit code {code}); last lines of train.log:\n{log}")
        return False
    say(f"{tag}: trained in {time.time() - t0:.0f}s")
    return True


def _make_weather_sets(grid: Grid, dataset: dict[str, Any]) -> None:
    for c in grid.conditions:
        for sev in grid.weather_severities:
            make_weather_set(
                dataset["val_img"],
                dataset["val_ann"],
                grid.weather_root(dataset),
                c,
                sev,
                grid.weather_seed,
                max_images=grid.training.config.max_val_images or None,
            )


def _run_one(grid: Grid, i: int, spec: RunSpec, weather_ready: set, say: Say, namer) -> bool:
    """Trains (or resumes) and scores one run; False when it failed."""
    ds, run_dir = grid.dataset(spec.dataset), grid.run_dir(spec)
    tag = f"{i}/{len(grid.plan)} {spec.dataset} {spec.mode} {spec.insert_level} seed {spec.seed}"
    os.makedirs(run_dir, exist_ok=True)
    check_run_config(
        run_dir, spec, train_command(grid.training, spec, ds, run_dir)[3:], grid.training
    )
    if is_finished(run_dir, grid.select, grid.eval_sets(ds), grid.area_ranges):
        say(f"{tag}: finished, skipped")
        return True
    if not _train(grid, spec, tag, say):
        return False
    if grid.conditions and ds["name"] not in weather_ready:
        _make_weather_sets(grid, ds)
        weather_ready.add(ds["name"])
    try:
        r = score_run(spec, run_dir, grid.select, grid.eval_sets(ds), grid.eval_kw, say)
    except (FileNotFoundError, ValueError) as exc:
        say(f"{tag}: FAILED to score: {worded(exc, namer)}")
        return False
    val = r["splits"]["val"]
    shown = ("AP", report_metrics(grid.area_ranges)[0], "AP50")
    scores = " ".join(f"{k}={val.get(k, float('nan')):.4f}" for k in shown)
    say(f"{tag}: done; val ({grid.select}) {scores}")
    return True


def run_grid(grid: Grid, say: Say = print, namer: Namer = str) -> list[str]:
    """Trains and scores every run of the plan; returns the directories of the failed runs.

    `namer` words the settings in the messages of caught errors (e.g. as command-line flags)."""
    failed, weather_ready, t0 = [], set(), time.time()
    for i, spec in enumerate(grid.plan, 1):
        if not _run_one(grid, i, spec, weather_ready, say, namer):
            failed.append(grid.run_dir(spec))
            if grid.stop_on_error:
                break
    say(f"grid pass over {len(grid.plan)} runs took {time.time() - t0:.0f}s")
    return failed


def finished_results(grid: Grid) -> list[dict[str, Any]]:
    """The result dicts of the finished runs, in plan order."""
    results = (read_result(grid.run_dir(spec), grid.select) for spec in grid.plan)
    return [r for r in results if r is not None]


def write_tables(grid: Grid, results: list[dict[str, Any]]) -> tuple[str, str, str]:
    """Writes OUT/results_<select>.md and .csv; returns (Markdown text, md path, csv path)."""
    has_test = any(d["test_img"] for d in grid.datasets)
    severities = ",".join(map(str, grid.weather_severities))
    text, csv_rows, robust = build_report(
        results,
        group_order(grid.plan),
        len({s.seed for s in grid.plan}),
        grid.select,
        splits=["val"] + (["test"] if has_test else []),
        conditions=grid.conditions,
        severities=grid.weather_severities,
        weather_note=f"; severities {severities}, weather seed {grid.weather_seed}",
        digits=grid.digits,
        area_ranges=grid.area_ranges,
    )
    md_path = os.path.join(grid.out_root, f"results_{grid.select}.md")
    csv_path = os.path.join(grid.out_root, f"results_{grid.select}.csv")
    write_text(text + "\n", md_path)
    write_csv(csv_rows, csv_path, report_metrics(grid.area_ranges), robust)
    return text, md_path, csv_path
