"""Run logs in the output directory: log.jsonl (every record), metrics.csv (one row per epoch or
evaluation) and training_curves.png (loss and AP curves; skipped with a warning without matplotlib).

Records are dicts with a "type" ("train", "epoch" or "eval") and the optimizer "step". On resume
the records written after the checkpoint's step are dropped, since that work is redone.
"""

import csv
import json
import math
import os
import warnings

CURVE_METRICS = ("AP", "AP50", "AP_small")


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class RunLogger:
    def __init__(self, output_dir, enabled=True, resume_step=None):
        self.output_dir = output_dir
        self.enabled = enabled
        self.jsonl_path = os.path.join(output_dir, "log.jsonl")
        self.csv_path = os.path.join(output_dir, "metrics.csv")
        self.plot_path = os.path.join(output_dir, "training_curves.png")
        self.records = []
        if not enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        if resume_step is not None and os.path.isfile(self.jsonl_path):
            self.records = [r for r in self._read_existing() if r.get("step", 0) <= resume_step]
        with open(self.jsonl_path, "w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")

    def _read_existing(self):
        out = []
        with open(self.jsonl_path, "r", encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
        return out

    def log(self, record: dict):
        if not self.enabled:
            return
        rec = {k: _jsonable(v) for k, v in record.items()}
        self.records.append(rec)
        with open(self.jsonl_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def write_csv(self):
        """One row per epoch summary, with the evaluation metrics of that epoch merged in."""
        if not self.enabled:
            return
        rows = {}
        for r in self.records:
            if r.get("type") not in ("epoch", "eval"):
                continue
            key = (r.get("epoch"), r.get("step"))
            row = rows.setdefault(key, {})
            for k, v in r.items():
                if k in ("type", "per_class_AP", "per_class_AP_small"):
                    continue
                if isinstance(v, (int, float, str)) or v is None:
                    row[k] = v
        if not rows:
            return
        columns = []
        for row in rows.values():
            for k in row:
                if k not in columns:
                    columns.append(k)
        tmp = self.csv_path + ".tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for key in sorted(rows, key=lambda k: (k[1] or 0, k[0] or 0)):
                w.writerow(rows[key])
        os.replace(tmp, self.csv_path)

    def plot(self):
        """Loss per step and AP metrics per evaluation, as a PNG."""
        if not self.enabled:
            return None
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            warnings.warn("matplotlib is not installed: skipping the training-curve plot")
            return None
        train = [r for r in self.records if r.get("type") == "train" and r.get("loss") is not None]
        evals = [r for r in self.records if r.get("type") == "eval"]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        ax = axes[0]
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
        ax = axes[1]
        for k in CURVE_METRICS:
            pts = [(r["step"], r[k]) for r in evals if r.get(k) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=k)
        if evals:
            ax.legend()
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("COCO metric")
        ax.set_title("evaluation")
        fig.tight_layout()
        tmp = self.plot_path + ".tmp.png"
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, self.plot_path)
        return self.plot_path
