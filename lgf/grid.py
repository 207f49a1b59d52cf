"""Multi-seed experiment grids: run planning, finished-run bookkeeping, and mean +- std tables.

A grid is modes x datasets x insert levels x seeds; each combination is one training run in its own
directory `OUT/<dataset>/<mode>_<level>_seed<seed>`. A *group* is (dataset, insert level, mode):
its runs differ only by seed, and the tables report each metric as mean +- sample standard
deviation (ddof=1) over the group's finished seeds.

Finished-run marker: `RUN_DIR/result_<select>.json` (`result_file`), written atomically by the
grid after the run's training ended and its selected checkpoint was scored on every requested
split. A restarted grid skips a run whose marker exists and covers the requested splits; a run
without it is resumed (`--resume auto`) or only re-scored if its training already ended.

Model selection (`select`): "best" = the trainer's best.pt (best validation value of its
--best-metric over the evaluations of the run); "last" = last.pt (the end of training). With
"best" the validation numbers are optimistic (the checkpoint was chosen on the same set); give a
separate test split for unbiased numbers.
"""

import csv
import json
import math
import os
from dataclasses import dataclass

from .evaluation import write_metrics_json

__all__ = [
    "REPORT_METRICS",
    "METRIC_LABELS",
    "SELECTIONS",
    "RunSpec",
    "plan_runs",
    "result_file",
    "read_result",
    "write_json_atomic",
    "mean_std",
    "aggregate",
    "format_value",
    "markdown_table",
    "weather_markdown_table",
    "write_csv",
    "parse_list",
]

# column order of the published table; "AP" is shown as mAP (COCO AP over IoU 0.5:0.95)
REPORT_METRICS = ("AP_small", "AP_medium", "AP_large", "AP50", "AP75", "AP")
METRIC_LABELS = {"AP": "mAP"}
SELECTIONS = ("best", "last")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    dataset: str
    insert_level: str
    mode: str
    seed: int

    @property
    def group(self):
        return (self.dataset, self.insert_level, self.mode)

    @property
    def name(self):
        return f"{self.mode}_{self.insert_level}_seed{self.seed}"

    def run_dir(self, out_root):
        return os.path.join(out_root, self.dataset, self.name)


def parse_list(text, what, convert=str):
    """'a,b,c' -> [a, b, c] (stripped, duplicates removed, order kept); errors name `what`."""
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = convert(part)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: cannot read {part!r}") from None
        if value not in items:
            items.append(value)
    if not items:
        raise ValueError(f"{what}: empty list")
    return items


def plan_runs(modes, datasets, levels, seeds):
    """Every RunSpec, seed-major (all groups of seed 0 first, then seed 1, ...), so a grid stopped
    halfway already has one seed of every group; inside a seed: dataset, level, mode order."""
    return [
        RunSpec(d, lvl, m, int(s)) for s in seeds for d in datasets for lvl in levels for m in modes
    ]


def result_file(run_dir, select):
    if select not in SELECTIONS:
        raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
    return os.path.join(run_dir, f"result_{select}.json")


def read_result(run_dir, select):
    """The run's result dict for `select`, or None if the run is not finished (no readable marker)."""
    path = result_file(run_dir, select)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


# The grid's run markers are written like the trainer's metric files: temp file + os.replace.
write_json_atomic = write_metrics_json


def _valid(v):
    # pycocotools reports -1 for an area range without ground truth
    return isinstance(v, (int, float)) and math.isfinite(v) and v >= 0


def mean_std(values):
    """(mean, sample std with ddof=1) of a list of numbers; std is None for one value; (None, None)
    for an empty list or when any value is missing / -1 (metric undefined for this split)."""
    if not values or not all(_valid(v) for v in values):
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def aggregate(results, split, metrics=REPORT_METRICS, group_order=None):
    """Groups run results and computes mean +- std of each metric on `split`.

    results: dicts with keys dataset, insert_level, mode, seed and "splits" ({split: metric dict}).
    Runs without that split are left out. Returns one row per group (in `group_order` if given,
    else first-seen order): {"dataset", "insert_level", "mode", "split", "n", "seeds",
    "mean": {metric: float|None}, "std": {metric: float|None}}.
    """
    groups = {}
    for r in results:
        m = (r.get("splits") or {}).get(split)
        if m is None:
            continue
        key = (r["dataset"], r["insert_level"], r["mode"])
        groups.setdefault(key, []).append((int(r["seed"]), m))
    keys = [k for k in group_order if k in groups] if group_order is not None else list(groups)
    rows = []
    for key in keys:
        runs = sorted(groups[key], key=lambda t: t[0])
        row = {
            "dataset": key[0],
            "insert_level": key[1],
            "mode": key[2],
            "split": split,
            "n": len(runs),
            "seeds": [s for s, _ in runs],
            "mean": {},
            "std": {},
        }
        for metric in metrics:
            mean, std = mean_std([m.get(metric) for _, m in runs])
            row["mean"][metric], row["std"][metric] = mean, std
        rows.append(row)
    return rows


def format_value(mean, std, scale=100.0, digits=2):
    """'12.34 ± 0.56'; '12.34 ± -' for one seed; 'n/a' for an undefined metric."""
    if mean is None:
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if std is not None else " ± -")


def markdown_table(rows, metrics=REPORT_METRICS, scale=100.0, digits=2, seeds_planned=None):
    """Markdown table: dataset | level | mode | seeds | one mean ± std column per metric."""
    head = ["dataset", "level", "mode", "seeds"] + [METRIC_LABELS.get(m, m) for m in metrics]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * len(metrics)) + "|",
    ]
    for r in rows:
        n = f"{r['n']}/{seeds_planned}" if seeds_planned else str(r["n"])
        cells = [r["dataset"], r["insert_level"], r["mode"], n]
        cells += [format_value(r["mean"][m], r["std"][m], scale, digits) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def weather_markdown_table(
    clean_rows, condition_rows, metrics=("AP", "AP_small"), scale=100.0, digits=2
):
    """Robustness table: one row per group; columns clean and each condition x `metrics`.

    condition_rows: {condition split name: rows from `aggregate`} (same groups as clean_rows)."""
    conds = list(condition_rows)
    head = ["dataset", "level", "mode", "seeds"]
    for split in ["clean"] + conds:
        head += [f"{split} {METRIC_LABELS.get(m, m)}" for m in metrics]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|",
    ]
    index = {
        c: {(r["dataset"], r["insert_level"], r["mode"]): r for r in condition_rows[c]}
        for c in conds
    }
    for r in clean_rows:
        key = (r["dataset"], r["insert_level"], r["mode"])
        cells = [r["dataset"], r["insert_level"], r["mode"], str(r["n"])]
        cells += [format_value(r["mean"][m], r["std"][m], scale, digits) for m in metrics]
        for c in conds:
            cr = index[c].get(key)
            cells += [
                format_value(cr["mean"][m], cr["std"][m], scale, digits) if cr else "n/a"
                for m in metrics
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows, path, metrics=REPORT_METRICS):
    """One CSV line per (group, split): dataset, insert_level, mode, split, n, seeds, then
    <metric>_mean and <metric>_std for each metric, as fractions (pycocotools' scale, not percent);
    empty cells for an undefined metric or the std of a single seed."""
    cols = ["dataset", "insert_level", "mode", "split", "n", "seeds"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_std"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            line = [
                r["dataset"],
                r["insert_level"],
                r["mode"],
                r["split"],
                r["n"],
                " ".join(map(str, r["seeds"])),
            ]
            for m in metrics:
                for v in (r["mean"][m], r["std"][m]):
                    line.append("" if v is None else repr(float(v)))
            w.writerow(line)
    os.replace(tmp, path)
