"""Multi-seed experiment grid: `python -m train.grid --help`.

Runs modes x datasets x insert levels x seeds, one `python -m train.train` subprocess per run, each
in OUT/<dataset>/<mode>_<level>_seed<seed> (its log in train.log there), then writes the tables
OUT/results_<select>.md and OUT/results_<select>.csv (mean ± sample std over seeds per group).

    python -m train.grid --out runs/grid --dataset kit=../shared/data/aerial-cars-kit \
        --modes baseline,lgf,lgf_paper,se,cbam --levels C3 --seeds 0,1,2 --select best \
        --backbone resnet18 --img-size 512 --epochs 12 --batch-size 4

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
existing run directory is refused (use a new --out).

Model selection (--select): best = best.pt, the checkpoint with the best validation --best-metric
(trainer default AP_small) among the run's evaluations; last = last.pt, the end of training. The
val table then reports that checkpoint's validation metrics (optimistic for "best", since it was
chosen on val); --test-img/--test-ann adds a test table scored with the same checkpoint.
--weather scores it on fog/rain/snow/night copies of the val set (made once per dataset by
lgf.weather, see train.weather) and adds a robustness table of AP and AP_small per condition.
"""

import argparse
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import time

from lgf.data import generate_synthetic_coco
from lgf.engine import MODES
from lgf.grid import (
    REPORT_METRICS,
    SELECTIONS,
    aggregate,
    markdown_table,
    parse_list,
    plan_runs,
    read_result,
    result_file,
    weather_markdown_table,
    write_csv,
    write_json_atomic,
)
from lgf.options import INSERT_LEVELS, build_train_parser
from lgf.weather import CONDITIONS, SEVERITIES, make_weather_set, parse_conditions

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# set by the grid for every run; not allowed among the pass-through flags
OWNED_FLAGS = {
    "--mode": "--modes",
    "--insert-level": "--levels",
    "--seed": "--seeds",
    "--output-dir": "--out",
    "--resume": None,
    "--synthetic-dir": None,
}
# training flags that do not change the result: may differ when a grid is restarted
RUNTIME_KEYS = {
    "workers",
    "threads",
    "no_progress",
    "log_every",
    "device",
    "save_every_iters",
    "eval_batch_size",
    "dist_url",
    "resume",
    "output_dir",
}
RUN_CONFIG = "grid_run.json"


def _say(msg):
    print(f"[grid] {msg}", flush=True)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m train.grid",
        allow_abbrev=False,
        description="Multi-seed grid of training runs with a mean ± std table; "
        "unknown flags are passed to every `python -m train.train` run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="runs/grid", help="grid root folder")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated trainer modes")
    p.add_argument("--levels", default="C3", help="comma-separated insert levels (C3, C4, C5)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    p.add_argument(
        "--dataset",
        action="append",
        default=None,
        help="'synthetic', DIR or NAME=DIR (repeatable); see the module help",
    )
    p.add_argument("--train-img")
    p.add_argument("--train-ann")
    p.add_argument("--val-img")
    p.add_argument("--val-ann")
    p.add_argument(
        "--data-name", default="data", help="name of the dataset given by --train-img etc."
    )
    p.add_argument("--test-img", help="test images folder (one dataset only)")
    p.add_argument("--test-ann", help="test COCO JSON (one dataset only)")
    p.add_argument(
        "--select",
        choices=SELECTIONS,
        default="best",
        help="checkpoint of each run that is reported: best (best.pt) or last (last.pt)",
    )
    p.add_argument(
        "--weather", action="store_true", help="also score weather-corrupted copies of val"
    )
    p.add_argument("--weather-conditions", default=",".join(CONDITIONS))
    p.add_argument("--weather-severity", type=int, choices=SEVERITIES, default=3)
    p.add_argument("--weather-seed", type=int, default=0)
    p.add_argument(
        "--eval-batch-size", type=int, default=4, help="batch size of the grid's own evaluations"
    )
    p.add_argument("--eval-device", default="auto", help="device of the grid's own evaluations")
    p.add_argument("--aggregate-only", action="store_true", help="run nothing; rebuild the tables")
    p.add_argument(
        "--dry-run", action="store_true", help="print the planned runs and commands only"
    )
    p.add_argument("--stop-on-error", action="store_true", help="stop at the first failed run")
    p.add_argument(
        "--digits", type=int, default=2, help="decimals in the Markdown tables (values in %%)"
    )
    return p


# ---- pass-through training flags ----------------------------------------------------------------


def parse_train_flags(rest):
    """Validates the pass-through flags against train.train's parser; returns (flags, Namespace)."""
    rest = [a for a in rest if a != "--"]
    for tok in rest:
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            if name in OWNED_FLAGS:
                hint = f"; use the grid's {OWNED_FLAGS[name]}" if OWNED_FLAGS[name] else ""
                raise ValueError(
                    f"{name} is set by the grid for each run and cannot be passed through{hint}"
                )
    parser = build_train_parser()
    parser.allow_abbrev = False
    parser.prog = "python -m train.grid (training flags)"
    ns, unknown = parser.parse_known_args(rest)
    if unknown:
        raise ValueError(
            f"unknown flags {unknown}: neither python -m train.grid nor python -m train.train "
            f"options (see both --help)"
        )
    return rest, ns


def _comparable(argv):
    parser = build_train_parser()
    parser.allow_abbrev = False
    ns, _ = parser.parse_known_args(argv)
    return {k: v for k, v in vars(ns).items() if k not in RUNTIME_KEYS}


# ---- datasets -----------------------------------------------------------------------------------


def _dataset_from_dir(name, root):
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"--dataset {name}: folder not found: {root!r}")
    anns = {s: os.path.join(root, f"{s}.json") for s in ("train", "val")}
    for split, path in anns.items():
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"--dataset {name}: {path!r} not found (a dataset folder needs train.json "
                f"and val.json)"
            )
    if os.path.isdir(os.path.join(root, "images")):
        imgs = {s: os.path.join(root, "images") for s in anns}
    elif all(os.path.isdir(os.path.join(root, s)) for s in anns):
        imgs = {s: os.path.join(root, s) for s in anns}
    else:
        imgs = {s: root for s in anns}
    return {
        "name": name,
        "train_img": imgs["train"],
        "train_ann": anns["train"],
        "val_img": imgs["val"],
        "val_ann": anns["val"],
        "extra": [],
    }


def resolve_datasets(args, train_ns, out_root):
    """The datasets of the grid as dicts of absolute paths (generating the synthetic set once)."""
    datasets = []
    explicit = (args.train_img, args.train_ann, args.val_img, args.val_ann)
    if any(explicit):
        if not all(explicit):
            raise ValueError(
                "--train-img, --train-ann, --val-img and --val-ann must be given together"
            )
        datasets.append(
            {
                "name": args.data_name,
                "train_img": os.path.abspath(args.train_img),
                "train_ann": os.path.abspath(args.train_ann),
                "val_img": os.path.abspath(args.val_img),
                "val_ann": os.path.abspath(args.val_ann),
                "extra": [],
            }
        )
    specs = args.dataset or ([] if datasets else ["synthetic"])
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = (
                (spec, None)
                if spec == "synthetic"
                else (os.path.basename(os.path.normpath(spec)), spec)
            )
        if path is None or path == "synthetic":
            root = os.path.join(out_root, "_data", "synthetic")
            paths = generate_synthetic_coco(
                root,
                num_train=train_ns.synthetic_train,
                num_val=train_ns.synthetic_val,
                image_size=train_ns.synthetic_size,
                seed=0,
            )
            ds = {"name": name, **{k: os.path.abspath(v) for k, v in paths.items()}, "extra": []}
            if train_ns.img_size is None:  # what the trainer does on its own synthetic set
                ds["extra"] = ["--img-size", str(train_ns.synthetic_size)]
            datasets.append(ds)
        else:
            datasets.append(_dataset_from_dir(name, path))
    names = [d["name"] for d in datasets]
    for n in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", n) or n.startswith("_"):
            raise ValueError(
                f"dataset name {n!r}: use letters, digits, '_', '.', '-' (not starting with '_')"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"dataset names must be unique, got {names}")
    if bool(args.test_img) != bool(args.test_ann):
        raise ValueError("--test-img and --test-ann must be given together")
    for d in datasets:
        d["test_img"] = d["test_ann"] = None
    if args.test_img:
        if len(datasets) != 1:
            raise ValueError("--test-img/--test-ann need exactly one dataset")
        for path, what in ((args.test_img, "--test-img"), (args.test_ann, "--test-ann")):
            if not os.path.exists(path):
                raise FileNotFoundError(f"{what}: not found: {path!r}")
        datasets[0]["test_img"], datasets[0]["test_ann"] = (
            os.path.abspath(args.test_img),
            os.path.abspath(args.test_ann),
        )
    return datasets


# ---- one run ------------------------------------------------------------------------------------


def train_command(spec, dataset, run_dir, flags):
    cmd = (
        [
            sys.executable,
            "-m",
            "train.train",
            "--train-img",
            dataset["train_img"],
            "--train-ann",
            dataset["train_ann"],
            "--val-img",
            dataset["val_img"],
            "--val-ann",
            dataset["val_ann"],
            "--mode",
            spec.mode,
            "--insert-level",
            spec.insert_level,
            "--seed",
            str(spec.seed),
            "--output-dir",
            run_dir,
            "--resume",
            "auto",
        ]
        + dataset["extra"]
        + list(flags)
    )
    if "--no-progress" not in flags:
        cmd.append("--no-progress")
    return cmd


def check_run_config(run_dir, spec, train_argv):
    """Records the run's training flags, or refuses a run directory made with other flags."""
    path = os.path.join(run_dir, RUN_CONFIG)
    if os.path.isfile(path):
        with open(path, "r", encoding="utf-8") as f:
            old = json.load(f)
        before, now = _comparable(old["train_argv"]), _comparable(train_argv)
        diff = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if diff:
            changes = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in diff)
            raise ValueError(
                f"{run_dir} was trained with other training flags ({changes}); "
                f"use a new --out or delete that run directory"
            )
        return
    write_json_atomic({"spec": dataclasses.asdict(spec), "train_argv": train_argv}, path)


def training_finished(run_dir, train_ns):
    """True when the run's summary.json says it reached --epochs or --max-iters."""
    path = os.path.join(run_dir, "summary.json")
    if not os.path.isfile(path):
        return False
    with open(path, "r", encoding="utf-8") as f:
        s = json.load(f)
    return s.get("epochs_done", 0) >= train_ns.epochs or bool(
        train_ns.max_iters and s.get("step", 0) >= train_ns.max_iters
    )


def run_training(cmd, run_dir):
    """Runs one training subprocess (output appended to RUN_DIR/train.log); returns its exit code."""
    os.makedirs(run_dir, exist_ok=True)
    log_path = os.path.join(run_dir, "train.log")
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        return subprocess.call(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _tail(path, n=15):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def _val_metrics_from_logs(run_dir, summary, select):
    """The validation metrics the trainer already computed for the selected checkpoint, or None."""
    if select == "last":
        m = summary.get("metrics")
        return m if m and m.get("step") == summary.get("step") else None
    step = (summary.get("best") or {}).get("step")
    for path in sorted(glob.glob(os.path.join(run_dir, "eval", "*.json"))):
        with open(path, "r", encoding="utf-8") as f:
            m = json.load(f)
        if m.get("step") == step:
            return m
    return None


def score_run(spec, dataset, run_dir, select, eval_sets, eval_kw):
    """Scores the selected checkpoint on every eval set; reuses the splits of an older result of
    the same checkpoint. Writes and returns the result dict (the finished-run marker)."""
    from lgf.evaluation import evaluate_checkpoint

    with open(os.path.join(run_dir, "summary.json"), "r", encoding="utf-8") as f:
        summary = json.load(f)
    if select == "best":
        if (summary.get("best") or {}).get("value") is None:
            raise ValueError(
                f"{run_dir}: --select best but the run has no evaluation (best.pt); "
                f"use --select last or let the trainer evaluate (--eval-every)"
            )
        ckpt, step = os.path.join(run_dir, "best.pt"), summary["best"]["step"]
    else:
        ckpt, step = os.path.join(run_dir, "last.pt"), summary["step"]
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"{run_dir}: selected checkpoint {ckpt!r} is missing")
    old = read_result(run_dir, select) or {}
    reuse = old.get("checkpoint_step") == step
    splits, sources = {}, {}
    for split, (img, ann) in eval_sets.items():
        src = {"img": img, "ann": ann}
        logged = _val_metrics_from_logs(run_dir, summary, select) if split == "val" else None
        if reuse and old.get("sources", {}).get(split) == src and split in old.get("splits", {}):
            splits[split] = old["splits"][split]
        elif logged is not None:
            splits[split] = logged
        else:
            _say(f"  scoring {spec.name} ({select}) on {split}")
            splits[split] = evaluate_checkpoint(ckpt, img, ann, **eval_kw)
        sources[split] = src
    result = {
        "dataset": spec.dataset,
        "insert_level": spec.insert_level,
        "mode": spec.mode,
        "seed": spec.seed,
        "select": select,
        "checkpoint": ckpt,
        "checkpoint_step": step,
        "splits": splits,
        "sources": sources,
        "train": {k: summary.get(k) for k in ("epochs_done", "step", "time", "best")},
    }
    write_json_atomic(result, result_file(run_dir, select))
    return result


def is_finished(run_dir, select, eval_sets):
    r = read_result(run_dir, select)
    if r is None:
        return False
    srcs = r.get("sources", {})
    return all(
        s in r.get("splits", {}) and srcs.get(s) == {"img": i, "ann": a}
        for s, (i, a) in eval_sets.items()
    )


# ---- tables -------------------------------------------------------------------------------------


def build_report(results, plan, args, weather_splits, has_test):
    """Markdown text of all tables, and the rows for the CSV."""
    order = []
    for spec in plan:
        if spec.group not in order:
            order.append(spec.group)
    n_seeds = len({s.seed for s in plan})
    splits = ["val"] + (["test"] if has_test else [])
    md = [f"# Grid results (select = {args.select})", ""]
    csv_rows = []
    for split in splits:
        rows = aggregate(results, split, REPORT_METRICS, order)
        csv_rows += rows
        md += [
            f"## {split}",
            "",
            markdown_table(rows, REPORT_METRICS, digits=args.digits, seeds_planned=n_seeds),
            "",
        ]
    if weather_splits:
        clean = aggregate(results, "val", REPORT_METRICS, order)
        cond_rows = {s: aggregate(results, s, REPORT_METRICS, order) for s in weather_splits}
        for rows in cond_rows.values():
            csv_rows += rows
        md += [
            f"## weather robustness (val set; severity {args.weather_severity}, weather seed {args.weather_seed})",
            "",
            weather_markdown_table(clean, cond_rows, digits=args.digits),
            "",
        ]
    sel = (
        "best.pt: best validation value of the trainer's --best-metric among its evaluations"
        if args.select == "best"
        else "last.pt: the end of training"
    )
    md += [
        f"COCO AP in % (pycocotools), mean ± sample standard deviation (ddof=1) over the seeds of each "
        f"group; '± -' = only one seed finished (no std); 'seeds' = finished/planned; n/a = the split has "
        f"no ground truth of that size. Checkpoint per run: {sel}."
        + (
            " The val numbers of 'best' are optimistic (selected on val)."
            if args.select == "best"
            else ""
        )
    ]
    return "\n".join(md), csv_rows


# ---- main ---------------------------------------------------------------------------------------


def main(argv=None):
    args, rest = build_parser().parse_known_args(argv)
    try:
        return _main(args, rest)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def _main(args, rest):
    flags, train_ns = parse_train_flags(rest)
    modes = parse_list(args.modes, "--modes")
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise ValueError(f"--modes: unknown {bad}; expected some of {sorted(MODES)}")
    levels = parse_list(args.levels, "--levels", str.upper)
    bad = [lv for lv in levels if lv not in INSERT_LEVELS]
    if bad:
        raise ValueError(f"--levels: unknown {bad}; expected some of {INSERT_LEVELS}")
    seeds = parse_list(args.seeds, "--seeds", int)
    conditions = parse_conditions(args.weather_conditions) if args.weather else ()
    out_root = os.path.abspath(args.out)
    os.makedirs(out_root, exist_ok=True)
    datasets = resolve_datasets(args, train_ns, out_root)
    by_name = {d["name"]: d for d in datasets}
    plan = plan_runs(modes, [d["name"] for d in datasets], levels, seeds)
    weather_splits = [f"{c}-s{args.weather_severity}" for c in conditions]

    def eval_sets_of(ds):
        sets = {"val": (ds["val_img"], ds["val_ann"])}
        if ds["test_img"]:
            sets["test"] = (ds["test_img"], ds["test_ann"])
        root = os.path.join(out_root, "_weather", ds["name"], f"seed{args.weather_seed}")
        for c, split in zip(conditions, weather_splits):
            d = os.path.join(root, split)
            sets[split] = (os.path.join(d, "images"), os.path.join(d, "annotations.json"))
        return sets

    eval_kw = {"batch_size": args.eval_batch_size, "device": args.eval_device, "workers": 0}
    failed = []
    if args.dry_run:
        for spec in plan:
            run_dir = spec.run_dir(out_root)
            state = (
                "finished"
                if is_finished(run_dir, args.select, eval_sets_of(by_name[spec.dataset]))
                else "to run"
            )
            print(
                f"{state:9s} {run_dir}\n          {' '.join(train_command(spec, by_name[spec.dataset], run_dir, flags))}"
            )
        return 0
    if not args.aggregate_only:
        weather_ready = set()
        t_grid = time.time()
        for i, spec in enumerate(plan, 1):
            ds = by_name[spec.dataset]
            run_dir = spec.run_dir(out_root)
            sets = eval_sets_of(ds)
            tag = f"{i}/{len(plan)} {spec.dataset} {spec.mode} {spec.insert_level} seed {spec.seed}"
            cmd = train_command(spec, ds, run_dir, flags)
            os.makedirs(run_dir, exist_ok=True)
            check_run_config(run_dir, spec, cmd[3:])
            if is_finished(run_dir, args.select, sets):
                _say(f"{tag}: finished, skipped")
                continue
            if not training_finished(run_dir, train_ns):
                _say(f"{tag}: training (log: {os.path.join(run_dir, 'train.log')})")
                t0 = time.time()
                code = run_training(cmd, run_dir)
                if code != 0 or not training_finished(run_dir, train_ns):
                    _say(
                        f"{tag}: FAILED (exit code {code}); last lines of train.log:\n"
                        + _tail(os.path.join(run_dir, "train.log"))
                    )
                    failed.append(run_dir)
                    if args.stop_on_error:
                        break
                    continue
                _say(f"{tag}: trained in {time.time() - t0:.0f}s")
            if conditions and ds["name"] not in weather_ready:
                root = os.path.join(out_root, "_weather", ds["name"], f"seed{args.weather_seed}")
                for c in conditions:
                    make_weather_set(
                        ds["val_img"],
                        ds["val_ann"],
                        root,
                        c,
                        args.weather_severity,
                        args.weather_seed,
                    )
                weather_ready.add(ds["name"])
            try:
                r = score_run(spec, ds, run_dir, args.select, sets, eval_kw)
            except (FileNotFoundError, ValueError) as exc:
                _say(f"{tag}: FAILED to score: {exc}")
                failed.append(run_dir)
                if args.stop_on_error:
                    break
                continue
            val = r["splits"]["val"]
            _say(
                f"{tag}: done; val ({args.select}) "
                + " ".join(
                    f"{k}={val.get(k, float('nan')):.4f}" for k in ("AP", "AP_small", "AP50")
                )
            )
        _say(f"grid pass over {len(plan)} runs took {time.time() - t_grid:.0f}s")

    results = []
    for spec in plan:
        r = read_result(spec.run_dir(out_root), args.select)
        if r is not None:
            results.append(r)
    if not results:
        _say("no finished run yet: no table")
        return 1 if failed else 0
    text, csv_rows = build_report(
        results, plan, args, weather_splits, has_test=any(d["test_img"] for d in datasets)
    )
    md_path = os.path.join(out_root, f"results_{args.select}.md")
    csv_path = os.path.join(out_root, f"results_{args.select}.csv")
    with open(md_path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(md_path + ".tmp", md_path)
    write_csv(csv_rows, csv_path)
    print(text)
    _say(f"tables: {md_path}, {csv_path} ({len(results)}/{len(plan)} runs finished)")
    if failed:
        _say(f"{len(failed)} run(s) failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
