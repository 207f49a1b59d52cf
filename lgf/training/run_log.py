"""Run logs in the output directory: log.jsonl (every record), metrics.csv (one row per epoch or
evaluation) and training_curves.png (loss and AP curves; skipped with a warning without matplotlib).

Records are dicts with a "type" ("train", "epoch" or "eval") and the optimizer "step"; sinks
(lgf.training.tensorboard_log) receive each record too. On resume the records written after the
checkpoint's step are dropped, since that work is redone. New records are appended to
log.jsonl; the rewrite on resume, the CSV and the plot are atomic writes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

from ..utils.atomic_write import atomic_write

__all__ = ["RunLogger", "CURVE_METRICS", "LOG_FILE", "CSV_FILE", "PLOT_FILE"]

LOG_FILE = "log.jsonl"
CSV_FILE = "metrics.csv"
PLOT_FILE = "training_curves.png"

CURVE_METRICS = ("AP", "AP50", "AP_small")
_NOT_IN_CSV = ("type", "per_class_AP", "per_class_AP_small")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _read_jsonl(path: str) -> list[dict]:
    out = []
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
    return out


class RunLogger:
    """The logs of one run; a disabled logger (ranks other than 0) writes nothing."""

    def __init__(
        self,
        output_dir: str,
        enabled: bool = True,
        resume_step: int | None = None,
        sinks: Sequence[Any] = (),
    ):
        self.output_dir = output_dir
        self.enabled = enabled
        self.sinks = list(sinks)  # also get every record: `sink.write(record)`, `sink.close()`
        self.jsonl_path = os.path.join(output_dir, LOG_FILE)
        self.csv_path = os.path.join(output_dir, CSV_FILE)
        self.plot_path = os.path.join(output_dir, PLOT_FILE)
        self.records = []
        if not enabled:
            return
        if resume_step is not None and os.path.isfile(self.jsonl_path):
            kept = _read_jsonl(self.jsonl_path)
            self.records = [r for r in kept if r.get("step", 0) <= resume_step]
        with atomic_write(self.jsonl_path) as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {k: _jsonable(v) for k, v in record.items()}
        self.records.append(rec)
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        for sink in self.sinks:
            sink.write(rec)

    def close(self) -> None:
        """Closes the sinks (the files of the logger itself are closed after every write)."""
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def _csv_rows(self) -> dict[tuple, dict[str, Any]]:
        rows = {}
        for r in self.records:
            if r.get("type") not in ("epoch", "eval"):
                continue
            row = rows.setdefault((r.get("epoch"), r.get("step")), {})
            for k, v in r.items():
                if k not in _NOT_IN_CSV and (isinstance(v, (int, float, str)) or v is None):
                    row[k] = v
        return rows

    def write_csv(self) -> None:
        """One row per epoch summary, with the evaluation metrics of that epoch merged in."""
        if not self.enabled:
            return
        rows = self._csv_rows()
        if not rows:
            return
        columns = list(dict.fromkeys(k for row in rows.values() for k in row))
        with atomic_write(self.csv_path, newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for key in sorted(rows, key=lambda k: (k[1] or 0, k[0] or 0)):
                w.writerow(rows[key])

    def plot(self) -> str | None:
        """Loss per step and AP metrics per evaluation, as a PNG; returns its path."""
        if not self.enabled:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            warnings.warn("matplotlib is not installed: skipping the training-curve plot")
            return None
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        self._plot_losses(axes[0])
        self._plot_metrics(axes[1])
        fig.tight_layout()
        with atomic_write(self.plot_path, "wb") as f:
            fig.savefig(f, format="png", dpi=90)
        plt.close(fig)
        return self.plot_path

    def _plot_losses(self, ax) -> None:
        train = [r for r in self.records if r.get("type") == "train" and r.get("loss") is not None]
        if train:
            ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="loss")
            for k in ("loss_classification", "loss_bbox_regression"):
                pts = [(r["step"], r[k]) for r in train if r.get(k) is not None]
                if pts:
                    ax.plot(*zip(*pts), label=k.replace("loss_", ""), alpha=0.7)
            ax.legend()
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title("loss")

    def _plot_metrics(self, ax) -> None:
        evals = [r for r in self.records if r.get("type") == "eval"]
        for k in CURVE_METRICS:
            pts = [(r["step"], r[k]) for r in evals if r.get(k) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=k)
        if evals:
            ax.legend()
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("COCO metric")
        ax.set_title("evaluation")
