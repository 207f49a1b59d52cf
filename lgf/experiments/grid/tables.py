"""Mean +- std tables of a grid's finished runs (Markdown and CSV).

The tables report each metric of a group (dataset, insert level, mode) as the mean +- sample
standard deviation (ddof=1) over the group's finished seeds, in % in Markdown and as fractions
(pycocotools' scale) in CSV. The columns are the AP metrics of the grid's area protocol
(lgf.evaluation.area_ranges); with weather conditions, a robustness table adds each condition's
AP (mean over the severities), mPC and rPC (lgf.experiments.grid.robustness).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any

from ...evaluation.area_ranges import area_protocol
from ...utils.atomic_write import atomic_write
from ..weather_sets import weather_split_name
from .robustness import ROBUSTNESS_METRICS, aggregate_robustness
from .stats import mean_std

__all__ = [
    "REPORT_METRICS",
    "METRIC_LABELS",
    "report_metrics",
    "mean_std",
    "aggregate",
    "format_value",
    "markdown_table",
    "weather_markdown_table",
    "robustness_markdown_table",
    "write_csv",
    "build_report",
]


def report_metrics(area_ranges: str = "coco") -> tuple[str, ...]:
    """The table's columns: AP per size bucket (smallest first), AP50, AP75, AP."""
    return (*area_protocol(area_ranges).ap_names, "AP50", "AP75", "AP")


# column order of the published table; "AP" is shown as mAP (COCO AP over IoU 0.5:0.95)
REPORT_METRICS = report_metrics("coco")
METRIC_LABELS = {"AP": "mAP"}


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


def robustness_markdown_table(
    clean_rows: Sequence[dict[str, Any]],
    robustness_rows: Sequence[dict[str, Any]],
    conditions: Sequence[str],
    scale: float = 100.0,
    digits: int = 2,
) -> str:
    """One row per group: clean mAP, each condition's mAP (mean over the severities), mPC and
    rPC (all in %), each mean ± std over the seeds that have every split."""
    names = (*conditions, *ROBUSTNESS_METRICS)
    head = ["dataset", "level", "mode", "seeds", "clean mAP"]
    head += [f"{c} mAP" for c in conditions] + list(ROBUSTNESS_METRICS)
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|",
    ]
    index = {(r["dataset"], r["insert_level"], r["mode"]): r for r in robustness_rows}
    for clean in clean_rows:
        r = index.get((clean["dataset"], clean["insert_level"], clean["mode"]))
        cells = [clean["dataset"], clean["insert_level"], clean["mode"], str(r["n"] if r else 0)]
        cells.append(format_value(clean["mean"]["AP"], clean["std"]["AP"], scale, digits))
        cells += [
            format_value(r["mean"][k], r["std"][k], scale, digits) if r else "n/a" for k in names
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cells(mean: float | None, std: float | None) -> list[str]:
    return ["" if v is None else repr(float(v)) for v in (mean, std)]


def _csv_line(row: dict[str, Any], metrics: Sequence[str], extra: dict[str, Any] | None):
    line = [
        row["dataset"],
        row["insert_level"],
        row["mode"],
        row["split"],
        row["n"],
        " ".join(map(str, row["seeds"])),
    ]
    for m in metrics:
        line += _cells(row["mean"][m], row["std"][m])
    if extra is not None:
        for m in ROBUSTNESS_METRICS:
            line += _cells(extra["mean"][m], extra["std"][m]) if extra else ["", ""]
    return line


def write_csv(
    rows: Iterable[dict[str, Any]],
    path: str,
    metrics: Sequence[str] = REPORT_METRICS,
    robustness: Sequence[dict[str, Any]] | None = None,
) -> None:
    """One CSV line per (group, split): dataset, insert_level, mode, split, n, seeds, then
    <metric>_mean and <metric>_std for each metric, as fractions (pycocotools' scale, not percent);
    empty cells for an undefined metric or the std of a single seed. robustness: rows of
    `aggregate_robustness`; adds mPC_mean, mPC_std, rPC_mean, rPC_std, filled on each group's
    clean ("val") line (their n and seeds are in the Markdown table)."""
    cols = ["dataset", "insert_level", "mode", "split", "n", "seeds"]
    for m in [*metrics, *(ROBUSTNESS_METRICS if robustness is not None else ())]:
        cols += [f"{m}_mean", f"{m}_std"]
    index = {(r["dataset"], r["insert_level"], r["mode"]): r for r in robustness or ()}
    with atomic_write(path, newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            extra = None
            if robustness is not None:
                key = (r["dataset"], r["insert_level"], r["mode"])
                extra = index.get(key, {}) if r["split"] == "val" else {}
            w.writerow(_csv_line(r, metrics, extra))


def _footer(select: str, robustness: bool) -> str:
    if select == "best":
        chosen = (
            "best.pt: best validation value of the trainer's --best-metric among its evaluations"
        )
        caveat = " The val numbers of 'best' are optimistic (selected on val)."
    else:
        chosen, caveat = "last.pt: the end of training", ""
    text = (
        "COCO AP in % (pycocotools), mean ± sample standard deviation (ddof=1) over the seeds of "
        "each group; '± -' = only one seed finished (no std); 'seeds' = finished/planned; n/a = "
        f"the split has no ground truth of that size. Checkpoint per run: {chosen}.{caveat}"
    )
    if robustness:
        text += (
            " mPC = mean mAP over the weather conditions and severities, rPC = mPC / clean mAP "
            "(Michaelis et al. 2019), computed per run, then mean ± std over the seeds."
        )
    return text


def build_report(
    results: Sequence[dict[str, Any]],
    order: Sequence[tuple[str, str, str]],
    n_seeds: int,
    select: str,
    splits: Sequence[str] = ("val",),
    conditions: Sequence[str] = (),
    severities: Sequence[int] = (),
    weather_note: str = "",
    digits: int = 2,
    area_ranges: str = "coco",
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(Markdown text of every table, the rows for the CSV, the robustness rows or None).

    One mean ± std table per split of `splits` (rows in the group `order`, seeds as
    finished/`n_seeds`, columns `report_metrics(area_ranges)`), then, with weather `conditions`
    at `severities`, the robustness table (mPC, rPC) and the table of each corrupted split's
    AP and AP of the smallest bucket (`weather_note` is appended to their headings)."""
    metrics = report_metrics(area_ranges)
    md = [f"# Grid results (select = {select}, area ranges = {area_ranges})", ""]
    csv_rows = []
    for split in splits:
        rows = aggregate(results, split, metrics, order)
        csv_rows += rows
        table = markdown_table(rows, metrics, digits=digits, seeds_planned=n_seeds)
        md += [f"## {split}", "", table, ""]
    robust = None
    if conditions:
        clean = aggregate(results, "val", metrics, order)
        robust = aggregate_robustness(results, conditions, severities, order)
        table = robustness_markdown_table(clean, robust, conditions, digits=digits)
        md += [f"## weather robustness: mPC and rPC (val set{weather_note})", "", table, ""]
        weather_splits = [weather_split_name(c, s) for c in conditions for s in severities]
        cond_rows = {s: aggregate(results, s, metrics, order) for s in weather_splits}
        for rows in cond_rows.values():
            csv_rows += rows
        shown = ("AP", metrics[0])
        table = weather_markdown_table(clean, cond_rows, metrics=shown, digits=digits)
        md += [f"## weather robustness per split (val set{weather_note})", "", table, ""]
    md.append(_footer(select, robust is not None))
    return "\n".join(md), csv_rows, robust
