"""Multi-seed experiment grid: `python -m train.grid --help`.

Runs modes x datasets x insert levels x seeds, one `python -m train.train` subprocess per run, each
in OUT/<dataset>/<mode>_<level>_seed<seed> (OUT: --output-dir; its log in train.log there), then
writes the tables OUT/results_<select>.md and OUT/results_<select>.csv (mean ± sample std over
seeds per group).

    python -m train.grid --output-dir runs/grid --dataset kit=DATA/aerial-cars-kit \\
        --modes baseline,lgf,lgf_paper,se,cbam --levels C3 --seeds 0,1,2 --select best \\
        --weather --weather-conditions snow,frost,fog,brightness --severities 1,2,3,4,5 \\
        --backbone resnet18 --img-size 512 --epochs 12 --batch-size 4 --area-ranges tiny \\
        --best-metric AP_s

Every flag the grid does not know is passed to each training run (validated against
train.train's options first), e.g. --epochs, --batch-size, --img-size, --backbone, --max-iters,
--lr, --ema, --best-metric; a `--` separator is optional. The grid sets --mode, --insert-level,
--seed, --output-dir, --resume auto and the data paths itself.

Datasets (--dataset, repeatable): `synthetic` (the trainer's generated set, shared by all runs),
a folder DIR holding train.json and val.json with the images in DIR/images (or DIR/train and
DIR/val), or NAME=DIR to name it; or the explicit --train-img/--train-ann/--val-img/--val-ann
(named by --data-name). Default: synthetic.

Finished runs: a run is finished when RUN_DIR/result_<select>.json exists and covers the
requested splits; a restarted grid skips it. An unfinished run is resumed from its last.pt
(--resume auto), or only re-scored if its training already ended. Changing training flags for an
existing run directory is refused (use a new --output-dir).

Model selection (--select): best = best.pt, the checkpoint with the best validation --best-metric
(trainer default AP_small) among the run's evaluations; last = last.pt, the end of training. The
val table then reports that checkpoint's validation metrics (optimistic for "best", since it was
chosen on val); --test-img/--test-ann adds a test table scored with the same checkpoint.
--weather scores it on copies of the val set corrupted by each of --weather-conditions (fog, rain,
snow, night, frost, brightness) at each of --severities (made once per dataset by
lgf.experiments.weather_sets, see train.weather) and adds the robustness tables: per group the
clean mAP, each condition's mAP (mean over the severities), mPC (mean mAP over conditions and
severities) and rPC = mPC / clean mAP (Michaelis et al. 2019), mean ± std over the seeds, also as
mPC/rPC columns of the CSV; then AP and AP of the smallest size bucket of every corrupted split.

The training flag --area-ranges coco|tiny (passed through) also sets the size buckets of the
grid's own evaluations and the tables' columns (tiny: AP_vt, AP_t, AP_s, AP_m). The work is
lgf.experiments.grid.
"""

from __future__ import annotations

import argparse
import os
import sys

from lgf.experiments.grid.datasets import resolve_datasets
from lgf.experiments.grid.plan import parse_axes, plan_runs
from lgf.experiments.grid.runner import (
    Grid,
    describe_plan,
    finished_results,
    run_grid,
    write_tables,
)
from lgf.experiments.grid.runs import SELECTIONS, TrainingCommand
from lgf.experiments.weather import CONDITIONS, parse_conditions, parse_severities
from lgf.modes import MODES
from lgf.training.config import TrainConfig

from . import train as train_command
from .flags import HelpFormatter, deprecated_alias, flag_namer, report_error

# The root the training module is importable from: the checkout, or site-packages when installed.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# set by the grid for every run; not allowed among the pass-through flags
OWNED_FLAGS = {
    "--mode": "--modes",
    "--insert-level": "--levels",
    "--seed": "--seeds",
    "--output-dir": "--output-dir",
    "--resume": None,
    "--synthetic-dir": None,
}
# library setting -> grid flag, where the flag is not --<setting>
NAMER = flag_namer({"conditions": "--weather-conditions"})


def _say(msg: str) -> None:
    print(f"[grid] {msg}", flush=True)


def _data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        action="append",
        default=None,
        help="'synthetic', DIR or NAME=DIR (repeatable); see the module help",
    )
    p.add_argument("--train-img", help="training images folder (instead of --dataset)")
    p.add_argument("--train-ann", help="training COCO JSON")
    p.add_argument("--val-img", help="validation images folder")
    p.add_argument("--val-ann", help="validation COCO JSON")
    p.add_argument(
        "--data-name", default="data", help="name of the dataset given by --train-img etc."
    )
    p.add_argument("--test-img", help="test images folder (one dataset only)")
    p.add_argument("--test-ann", help="test COCO JSON (one dataset only)")


def _scoring_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--select",
        choices=SELECTIONS,
        default="best",
        help="checkpoint of each run that is reported: best (best.pt) or last (last.pt)",
    )
    p.add_argument(
        "--weather", action="store_true", help="also score weather-corrupted copies of val"
    )
    p.add_argument(
        "--weather-conditions",
        default=",".join(CONDITIONS),
        help="comma-separated subset of " + ",".join(CONDITIONS),
    )
    p.add_argument(
        "--severities",
        default="3",
        help="comma-separated weather severities 1..5 (the benchmark's protocol: 1,2,3,4,5)",
    )
    p.add_argument("--weather-seed", type=int, default=0, help="seed of the corruptions")
    p.add_argument(
        "--eval-batch-size", type=int, default=4, help="batch size of the grid's own evaluations"
    )
    p.add_argument("--eval-device", default="auto", help="device of the grid's own evaluations")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.grid",
        allow_abbrev=False,
        description="Multi-seed grid of training runs with a mean ± std table; "
        "unknown flags are passed to every `python -m train.train` run.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--output-dir", default="runs/grid", help="grid root folder")
    deprecated_alias(p, "--out", "--output-dir")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated trainer modes")
    p.add_argument("--levels", default="C3", help="comma-separated insert levels (C3, C4, C5)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    _data_flags(p)
    _scoring_flags(p)
    p.add_argument("--aggregate-only", action="store_true", help="run nothing; rebuild the tables")
    p.add_argument(
        "--dry-run", action="store_true", help="print the planned runs and commands only"
    )
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first failed run")
    p.add_argument(
        "--digits", type=int, default=2, help="decimals in the Markdown tables (values in %%)"
    )
    return p


def _train_parser() -> argparse.ArgumentParser:
    parser = train_command.build_parser()
    parser.allow_abbrev = False
    parser.prog = "python -m train.grid (training flags)"
    return parser


def _parse_known(argv: list[str]) -> TrainConfig:
    """Training settings of a run's recorded argv (flags of other versions are ignored)."""
    ns, _ = _train_parser().parse_known_args(argv)
    return TrainConfig(**vars(ns))


def parse_train_flags(rest: list[str]) -> tuple[list[str], TrainConfig]:
    """Validates the pass-through flags against train.train's parser; returns (flags, settings)."""
    rest = [a for a in rest if a != "--"]
    for tok in rest:
        name = tok.split("=", 1)[0]
        if tok.startswith("--") and name in OWNED_FLAGS:
            hint = f"; use the grid's {OWNED_FLAGS[name]}" if OWNED_FLAGS[name] else ""
            raise ValueError(
                f"{name} is set by the grid for each run and cannot be passed through{hint}"
            )
    ns, unknown = _train_parser().parse_known_args(rest)
    if unknown:
        raise ValueError(
            f"unknown flags {unknown}: neither python -m train.grid nor python -m train.train "
            f"options (see both --help)"
        )
    return rest, TrainConfig(**vars(ns))


def make_grid(args: argparse.Namespace, rest: list[str]) -> Grid:
    """The Grid that the command line describes (datasets resolved, synthetic set made)."""
    flags, config = parse_train_flags(rest)
    modes, levels, seeds = parse_axes(args.modes, args.levels, args.seeds)
    conditions = parse_conditions(args.weather_conditions) if args.weather else ()
    severities = parse_severities(args.severities)
    out_root = os.path.abspath(args.output_dir)
    os.makedirs(out_root, exist_ok=True)
    explicit = {k: getattr(args, k) for k in ("train_img", "train_ann", "val_img", "val_ann")}
    datasets = resolve_datasets(
        args.dataset, out_root, config, explicit, args.data_name, args.test_img, args.test_ann
    )
    return Grid(
        out_root=out_root,
        datasets=datasets,
        plan=plan_runs(modes, [d["name"] for d in datasets], levels, seeds),
        training=TrainingCommand(
            module=f"{__package__}.train",
            flags=flags,
            config=config,
            parse=_parse_known,
            cwd=PACKAGE_ROOT,
        ),
        select=args.select,
        conditions=conditions,
        weather_severities=severities,
        weather_seed=args.weather_seed,
        eval_kw={
            "batch_size": args.eval_batch_size,
            "device": args.eval_device,
            "workers": 0,
            "area_ranges": config.area_ranges,  # the runs' own buckets
            "max_images": config.max_val_images or None,  # the images the runs validate on
        },
        digits=args.digits,
        stop_on_error=args.stop_on_error,
    )


def _run(args: argparse.Namespace, rest: list[str]) -> int:
    grid = make_grid(args, rest)
    if args.dry_run:
        print("\n".join(describe_plan(grid)))
        return 0
    failed = [] if args.aggregate_only else run_grid(grid, _say, NAMER)
    results = finished_results(grid)
    if not results:
        _say("no finished run yet: no table")
        return 1 if failed else 0
    text, md_path, csv_path = write_tables(grid, results)
    print(text)
    _say(f"tables: {md_path}, {csv_path} ({len(results)}/{len(grid.plan)} runs finished)")
    if failed:
        _say(f"{len(failed)} run(s) failed: " + ", ".join(failed))
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    try:
        return _run(args, rest)
    except (FileNotFoundError, ValueError) as exc:
        report_error(exc, NAMER)
        return 2


if __name__ == "__main__":
    sys.exit(main())
