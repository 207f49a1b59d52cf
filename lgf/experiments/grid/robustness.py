"""Robustness summary of a grid's runs: mPC and rPC as in Michaelis et al. (2019),
"Benchmarking Robustness in Object Detection".

For one run, with P(c, s) the AP (COCO AP@[.5:.95]) on the val set corrupted by condition c at
severity s, and P_clean the AP on the clean val set:

    mPC = mean over the conditions c and the severities s of P(c, s)
    rPC = mPC / P_clean

Each condition's mean over the severities is reported as well. A group's value is the mean and
sample standard deviation (ddof=1) of its runs' values, like every other cell of the tables
(rPC is a ratio per run first, then averaged over seeds). A run enters when it has the clean
split and every corrupted split; a value is undefined (None, "n/a" in the tables) when an AP is
undefined (-1: no ground truth) or, for rPC, when the clean AP is 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..weather_sets import weather_split_name
from .stats import mean_std

__all__ = ["ROBUSTNESS_METRICS", "run_robustness", "aggregate_robustness"]

ROBUSTNESS_METRICS = ("mPC", "rPC")


def _ap(splits: dict[str, Any], split: str) -> float | None:
    v = (splits.get(split) or {}).get("AP")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 else None


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else math.fsum(values) / len(values)


def run_robustness(
    splits: dict[str, Any], conditions: Sequence[str], severities: Sequence[int]
) -> dict[str, float | None]:
    """{condition: mean AP over the severities, ..., "mPC", "rPC"} of one run's split metrics
    ({split name: metric dict}, with "val" the clean split)."""
    per_condition = {
        c: _mean([_ap(splits, weather_split_name(c, s)) for s in severities]) for c in conditions
    }
    mpc = _mean(list(per_condition.values()))
    clean = _ap(splits, "val")
    rpc = mpc / clean if mpc is not None and clean else None
    return {**per_condition, "mPC": mpc, "rPC": rpc}


def _complete(result: dict[str, Any], needed: Sequence[str]) -> bool:
    splits = result.get("splits") or {}
    return all(s in splits for s in needed)


def aggregate_robustness(
    results: Iterable[dict[str, Any]],
    conditions: Sequence[str],
    severities: Sequence[int],
    group_order: Sequence[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """One row per group (dataset, insert level, mode), in `group_order` if given, of the runs
    that have the clean and every corrupted split: {"dataset", "insert_level", "mode", "split":
    "robustness", "n", "seeds", "mean": {name: value}, "std": {name: value}} for the names of
    `run_robustness`."""
    needed = ["val"] + [weather_split_name(c, s) for c in conditions for s in severities]
    groups: dict[tuple[str, str, str], list[tuple[int, dict[str, Any]]]] = {}
    for r in results:
        if _complete(r, needed):
            values = run_robustness(r["splits"], conditions, severities)
            key = (r["dataset"], r["insert_level"], r["mode"])
            groups.setdefault(key, []).append((int(r["seed"]), values))
    keys = [k for k in group_order if k in groups] if group_order is not None else list(groups)
    rows = []
    for key in keys:
        runs = sorted(groups[key], key=lambda t: t[0])
        row = {"dataset": key[0], "insert_level": key[1], "mode": key[2], "split": "robustness"}
        row.update({"n": len(runs), "seeds": [s for s, _ in runs], "mean": {}, "std": {}})
        for name in (*conditions, *ROBUSTNESS_METRICS):
            row["mean"][name], row["std"][name] = mean_std([v[name] for _, v in runs])
        rows.append(row)
    return rows
