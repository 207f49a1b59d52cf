"""Mean +- std tables of a grid's finished runs (Markdown and CSV).

The tables report each metric of a group (dataset, insert level, mode) as the mean +- sample
standard deviation (ddof=1) over the group's finished seeds, in % in Markdown and as fractions
(pycocotools' scale) in CSV.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from typing import Any

from ...utils.atomic_write import atomic_write

__all__ = [
    "REPORT_METRICS",
    "METRIC_LABELS",
    "mean_std",
    "aggregate",
    "format_value",
    "markdown_table",
    "weather_markdown_table",
    "write_csv",
    "build_report",
]

# column order of the published table; "AP" is shown as mAP (COCO AP over IoU 0.5:0.95)
REPORT_METRICS = ("AP_small", "AP_medium", "AP_large", "AP50", "AP75", "AP")
METRIC_LABELS = {"AP": "mAP"}


def _valid(v):
    # pycocotools reports -1 for an area range without ground truth
    return isinstance(v, (int, float)) and math.isfinite(v) and v >= 0


def mean_std(values: Sequence[Any]) -> tuple[float | None, float | None]:
    """(mean, sample std with ddof=1) of a list of numbers; std is None for one value; (None, None)
    for an empty list or when any value is missing / -1 (metric undefined for this split)."""
    if not values or not all(_valid(v) for v in values):
        return None, None
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def aggregate(
    results: Iterable[dict[str, Any]],
    split: str,
    metrics: Sequence[str] = REPORT_METRICS,
    group_order: Sequence[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
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


def format_value(
    mean: float | None, std: float | None, scale: float = 100.0, digits: int = 2
) -> str:
    """'12.34 ± 0.56'; '12.34 ± -' for one seed; 'n/a' for an undefined metric."""
    if mean is None:
        return "n/a"
    s = f"{mean * scale:.{digits}f}"
    return s + (f" ± {std * scale:.{digits}f}" if std is not None else " ± -")


def markdown_table(
    rows: Sequence[dict[str, Any]],
    metrics: Sequence[str] = REPORT_METRICS,
    scale: float = 100.0,
    digits: int = 2,
    seeds_planned: int | None = None,
) -> str:
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
    clean_rows: Sequence[dict[str, Any]],
    condition_rows: dict[str, Sequence[dict[str, Any]]],
    metrics: Sequence[str] = ("AP", "AP_small"),
    scale: float = 100.0,
    digits: int = 2,
) -> str:
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


def _csv_line(row: dict[str, Any], metrics: Sequence[str]) -> list[Any]:
    line = [
        row["dataset"],
        row["insert_level"],
        row["mode"],
        row["split"],
        row["n"],
        " ".join(map(str, row["seeds"])),
    ]
    for m in metrics:
        for v in (row["mean"][m], row["std"][m]):
            line.append("" if v is None else repr(float(v)))
    return line


def write_csv(
    rows: Iterable[dict[str, Any]], path: str, metrics: Sequence[str] = REPORT_METRICS
) -> None:
    """One CSV line per (group, split): dataset, insert_level, mode, split, n, seeds, then
    <metric>_mean and <metric>_std for each metric, as fractions (pycocotools' scale, not percent);
    empty cells for an undefined metric or the std of a single seed."""
    cols = ["dataset", "insert_level", "mode", "split", "n", "seeds"]
    for m in metrics:
        cols += [f"{m}_mean", f"{m}_std"]
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow(_csv_line(r, metrics))


def _footer(select: str) -> str:
    if select == "best":
        chosen = (
            "best.pt: best validation value of the trainer's --best-metric among its evaluations"
        )
        caveat = " The val numbers of 'best' are optimistic (selected on val)."
    else:
        chosen, caveat = "last.pt: the end of training", ""
    return (
        "COCO AP in % (pycocotools), mean ± sample standard deviation (ddof=1) over the seeds of "
        "each group; '± -' = only one seed finished (no std); 'seeds' = finished/planned; n/a = "
        f"the split has no ground truth of that size. Checkpoint per run: {chosen}.{caveat}"
    )


def build_report(
    results: Sequence[dict[str, Any]],
    order: Sequence[tuple[str, str, str]],
    n_seeds: int,
    select: str,
    splits: Sequence[str] = ("val",),
    weather_splits: Sequence[str] = (),
    weather_note: str = "",
    digits: int = 2,
) -> tuple[str, list[dict[str, Any]]]:
    """(Markdown text of every table, the rows for the CSV).

    One mean ± std table per split of `splits` (rows in the group `order`, seeds as
    finished/`n_seeds`), then, if `weather_splits`, the robustness table of val against each
    of them (`weather_note` is appended to its heading)."""
    md = [f"# Grid results (select = {select})", ""]
    csv_rows = []
    for split in splits:
        rows = aggregate(results, split, REPORT_METRICS, order)
        csv_rows += rows
        table = markdown_table(rows, REPORT_METRICS, digits=digits, seeds_planned=n_seeds)
        md += [f"## {split}", "", table, ""]
    if weather_splits:
        clean = aggregate(results, "val", REPORT_METRICS, order)
        cond_rows = {s: aggregate(results, s, REPORT_METRICS, order) for s in weather_splits}
        for rows in cond_rows.values():
            csv_rows += rows
        table = weather_markdown_table(clean, cond_rows, digits=digits)
        md += [f"## weather robustness (val set{weather_note})", "", table, ""]
    md.append(_footer(select))
    return "\n".join(md), csv_rows
