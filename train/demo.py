"""Demo: a RetinaNet without and with the LGF block, trained from scratch on the synthetic
small-object set over several seeds; prints mean +- std per mode, the paired differences and
whether they exceed the seed-to-seed spread (lgf.experiments.demo).

    python -m train.demo                                  # make demo: 2 modes x 3 seeds
    python -m train.demo --seeds 0 1 2 3 4                # more seeds, a sharper test
    python -m train.demo --modes baseline lgf se cbam lgf_paper

Outputs in --output-dir (default runs/demo): data/ (the synthetic set), one training run per mode
and seed (MODE/seedN: checkpoints, logs, training_curves.png), demo_results.json and
demo_table.md. Every run trains afresh (an earlier demo's runs are overwritten).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from lgf.data import DatasetError
from lgf.experiments.demo import DemoSettings, format_report, run_demo
from lgf.modes import MODES
from lgf.training.checkpoint import CheckpointError
from lgf.utils.atomic_write import write_json, write_text
from lgf.utils.setting_errors import NamesSettings

from .flags import (
    HelpFormatter,
    add_progress_flag,
    deprecated_alias,
    flag,
    positive_int,
    report_error,
)


def build_parser() -> argparse.ArgumentParser:
    """The demo's parser; defaults from lgf.experiments.demo.DemoSettings."""
    p = argparse.ArgumentParser(
        prog="python -m train.demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
    )
    p.set_defaults(**dataclasses.asdict(DemoSettings()))
    p.add_argument("--output-dir", help="folder of the synthetic data, the runs and the report")
    p.add_argument("--modes", nargs="+", choices=sorted(MODES), help="the first is the baseline")
    p.add_argument("--seeds", nargs="+", type=int, help="training seeds (two or more for a test)")
    p.add_argument("--backbone", help="ResNet depth")
    p.add_argument("--epochs", type=positive_int, help="training epochs per run")
    p.add_argument("--img-size", type=positive_int, help="synthetic image side = model input")
    p.add_argument("--num-train", type=positive_int, help="synthetic training images")
    p.add_argument("--num-val", type=positive_int, help="synthetic validation images")
    p.add_argument("--batch-size", type=positive_int, help="images per step")
    p.add_argument("--lr", type=float, help="AdamW learning rate")
    p.add_argument("--warmup-iters", type=int, help="linear warm-up steps")
    p.add_argument("--data-seed", type=int, help="seed of the synthetic set (one set for all runs)")
    p.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (the numbers depend on it)"
    )
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--device", help="cpu, cuda or auto")
    add_progress_flag(p)
    deprecated_alias(p, "--progress", "--no-progress (bars are on by default)", "no_progress",
                     nargs=0, const=False)  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    settings = DemoSettings(**vars(build_parser().parse_args(argv)))
    try:
        results = run_demo(settings, say=lambda m: print(f"\n{m}", flush=True))
    except (NamesSettings, DatasetError, CheckpointError, FileNotFoundError, ValueError) as exc:
        report_error(exc, flag)
        return 2
    report = format_report(results)
    print("\n" + report)
    where = os.path.abspath(settings.output_dir)
    print(f"\ntotal wall time {results['wall_s']:.0f} s; runs in {where}")
    write_json(
        {**results, "report": report}, os.path.join(settings.output_dir, "demo_results.json")
    )
    write_text(report + "\n", os.path.join(settings.output_dir, "demo_table.md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
