"""Tests of the grid: aggregation arithmetic (lgf/experiments/grid/) and `python -m train.grid`
end to end."""

import csv
import math
import os
import statistics

import pytest

from lgf.experiments.grid.plan import plan_runs
from lgf.experiments.grid.runs import read_result
from lgf.experiments.grid.tables import (
    REPORT_METRICS,
    aggregate,
    format_value,
    markdown_table,
    mean_std,
    weather_markdown_table,
    write_csv,
)
from train import grid as grid_cli


def _result(mode, seed, values, dataset="d", level="C3", split="val"):
    return {
        "dataset": dataset,
        "insert_level": level,
        "mode": mode,
        "seed": seed,
        "splits": {split: values},
    }


# ---- aggregation -----------------------------------------------------------------------------


def test_mean_and_sample_std_exact():
    mean, std = mean_std([0.1, 0.3])
    assert mean == pytest.approx(0.2, abs=1e-15)
    assert std == pytest.approx(math.sqrt(0.02), abs=1e-15)  # ((0.1)^2 + (0.1)^2) / (2 - 1)
    values = [0.31, 0.27, 0.35, 0.30]
    mean, std = mean_std(values)
    assert mean == pytest.approx(statistics.fmean(values), abs=1e-15)
    assert std == pytest.approx(statistics.stdev(values), abs=1e-15)  # ddof = 1
    assert std != pytest.approx(statistics.pstdev(values), abs=1e-6)


def test_one_seed_and_undefined_metrics():
    assert mean_std([0.4]) == (0.4, None)
    assert mean_std([]) == (None, None)
    assert mean_std([0.2, -1.0]) == (None, None)  # pycocotools' -1: no ground truth of that size
    assert mean_std([0.2, None]) == (None, None)
    assert format_value(0.1234, 0.0056) == "12.34 ± 0.56"
    assert format_value(0.1234, None) == "12.34 ± -"
    assert format_value(None, None) == "n/a"


def test_aggregate_groups_by_mode_and_keeps_order():
    metrics = {k: 0.0 for k in REPORT_METRICS}
    results = [
        _result("lgf", 1, {**metrics, "AP": 0.30, "AP_small": 0.20}),
        _result("baseline", 0, {**metrics, "AP": 0.10, "AP_small": 0.05}),
        _result("lgf", 0, {**metrics, "AP": 0.20, "AP_small": 0.10}),
        _result("baseline", 1, {**metrics, "AP": 0.14, "AP_small": 0.07}),
        _result("lgf", 2, {**metrics, "AP": 0.40, "AP_small": 0.60, "AP_large": -1.0}),
        _result("se", 0, metrics, split="test"),  # no val split: left out of the val table
    ]
    rows = aggregate(results, "val", group_order=[("d", "C3", "baseline"), ("d", "C3", "lgf")])
    assert [(r["mode"], r["n"], r["seeds"]) for r in rows] == [
        ("baseline", 2, [0, 1]),
        ("lgf", 3, [0, 1, 2]),
    ]
    base, lgf = rows
    assert base["mean"]["AP"] == pytest.approx(0.12, abs=1e-15)
    assert base["std"]["AP"] == pytest.approx(math.sqrt(0.0008), abs=1e-15)
    assert lgf["mean"]["AP"] == pytest.approx(0.3, abs=1e-15)
    assert lgf["std"]["AP"] == pytest.approx(0.1, abs=1e-15)
    assert lgf["mean"]["AP_small"] == pytest.approx(0.3, abs=1e-15)
    assert lgf["std"]["AP_small"] == pytest.approx(
        math.sqrt(((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + 0.3**2) / 2)
    )
    assert lgf["mean"]["AP_large"] is None

    table = markdown_table(rows, seeds_planned=3)
    lines = table.splitlines()
    assert lines[0] == (
        "| dataset | level | mode | seeds | AP_small | AP_medium | AP_large | AP50 | AP75 | mAP |"
    )
    assert lines[2].startswith("| d | C3 | baseline | 2/3 | 6.00 ± 1.41 |")
    assert lines[2].endswith("| 12.00 ± 2.83 |")
    assert "| n/a |" in lines[3]


def test_csv_and_weather_table(tmp_path):
    m = {k: 0.5 for k in REPORT_METRICS}
    results = [_result("lgf", s, {**m, "AP": 0.1 * (s + 1)}) for s in range(2)]
    for r, v in zip(results, (0.05, 0.07)):
        r["splits"]["fog-s3"] = {**m, "AP": v, "AP_small": v / 2}
    clean = aggregate(results, "val")
    fog = aggregate(results, "fog-s3")
    path = tmp_path / "t.csv"
    write_csv(clean + fog, str(path))
    rows = list(csv.DictReader(open(path)))
    assert [r["split"] for r in rows] == ["val", "fog-s3"]
    assert float(rows[0]["AP_mean"]) == pytest.approx(0.15)
    assert float(rows[0]["AP_std"]) == pytest.approx(statistics.stdev([0.1, 0.2]))
    assert rows[0]["seeds"] == "0 1"
    one = aggregate(results[:1], "val")
    write_csv(one, str(path))
    assert list(csv.DictReader(open(path)))[0]["AP_std"] == ""
    table = weather_markdown_table(clean, {"fog-s3": fog})
    assert "fog-s3 mAP" in table.splitlines()[0]
    assert "| 6.00 ± 1.41 | 3.00 ± 0.71 |" in table


def test_plan_is_seed_major_and_names_runs():
    plan = plan_runs(["baseline", "lgf"], ["kit"], ["C3", "C4"], [0, 1])
    assert len(plan) == 8
    assert [p.seed for p in plan] == [0] * 4 + [1] * 4
    assert plan[0].run_dir("/o") == os.path.join("/o", "kit", "baseline_C3_seed0")
    assert len({p.run_dir("/o") for p in plan}) == 8


def test_pass_through_flags_are_validated():
    flags, ns = grid_cli.parse_train_flags(["--", "--epochs", "3", "--backbone", "resnet18"])
    assert flags == ["--epochs", "3", "--backbone", "resnet18"] and ns.epochs == 3
    for bad, match in (
        (["--seed", "1"], "--seeds"),
        (["--mode=lgf"], "--modes"),
        (["--output-dir", "x"], "--out"),
        (["--epoch", "2"], "unknown flags"),
        (["--resume", "auto"], "set by the grid"),
    ):
        with pytest.raises(ValueError, match=match):
            grid_cli.parse_train_flags(bad)


# ---- end to end ----------------------------------------------------------------------------

TRAIN_FLAGS = [
    "--backbone",
    "resnet18",
    "--synthetic-train",
    "4",
    "--synthetic-val",
    "2",
    "--synthetic-size",
    "64",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--max-iters",
    "1",
    "--workers",
    "0",
    "--threads",
    "1",
]


def test_grid_runs_skips_finished_runs_and_aggregates(tmp_path, capsys):
    out = tmp_path / "grid"
    argv = [
        "--out",
        str(out),
        "--modes",
        "baseline,lgf",
        "--seeds",
        "0",
        "--weather",
        "--weather-conditions",
        "fog",
        "--eval-batch-size",
        "2",
    ] + TRAIN_FLAGS
    assert grid_cli.main(argv) == 0
    text = capsys.readouterr().out
    run_dirs = [out / "synthetic" / f"{m}_C3_seed0" for m in ("baseline", "lgf")]
    logs = {}
    for d in run_dirs:
        r = read_result(str(d), "best")
        assert r is not None and set(r["splits"]) == {"val", "fog-s3"}
        assert r["checkpoint"] == str(d / "best.pt")
        logs[d] = (
            (d / "train.log").stat().st_mtime_ns,
            (d / "result_best.json").stat().st_mtime_ns,
            (d / "last.pt").stat().st_mtime_ns,
        )
        assert (d / "train.log").read_text().count("-m train.train") == 1
    assert "## val" in text and "## weather robustness" in text
    md = (out / "results_best.md").read_text()
    assert "| synthetic | C3 | baseline | 1/1 |" in md and "| synthetic | C3 | lgf | 1/1 |" in md
    assert "± -" in md and "one seed" in md
    rows = list(csv.DictReader(open(out / "results_best.csv")))
    assert {(r["mode"], r["split"]) for r in rows} == {
        (m, s) for m in ("baseline", "lgf") for s in ("val", "fog-s3")
    }
    assert (out / "_weather" / "synthetic" / "seed0" / "fog-s3" / "weather.json").is_file()

    # second invocation: nothing is trained or scored again
    assert grid_cli.main(argv) == 0
    again = capsys.readouterr().out
    assert again.count("finished, skipped") == 2 and "training (log" not in again
    for d in run_dirs:
        assert (
            (d / "train.log").stat().st_mtime_ns,
            (d / "result_best.json").stat().st_mtime_ns,
            (d / "last.pt").stat().st_mtime_ns,
        ) == logs[d]

    # another selection re-scores the trained runs without training them again
    assert grid_cli.main(argv[: -len(TRAIN_FLAGS)] + ["--select", "last"] + TRAIN_FLAGS) == 0
    assert "training (log" not in capsys.readouterr().out
    for d in run_dirs:
        assert (d / "train.log").stat().st_mtime_ns == logs[d][0]
        assert read_result(str(d), "last")["checkpoint"] == str(d / "last.pt")

    # changed training flags for existing run directories are refused
    changed = [a if a != "--max-iters" else "--iters-per-epoch" for a in argv]
    assert grid_cli.main(changed) == 2
    assert "other training flags" in capsys.readouterr().err


def test_grid_dry_run_and_bad_input(tmp_path, capsys):
    assert (
        grid_cli.main(
            ["--out", str(tmp_path), "--modes", "lgf", "--seeds", "3", "--dry-run"] + TRAIN_FLAGS
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "to run" in text and "--seed 3" in text and "--mode lgf" in text
    assert grid_cli.main(["--out", str(tmp_path), "--modes", "nope"]) == 2
    assert "--modes" in capsys.readouterr().err
    assert grid_cli.main(["--out", str(tmp_path), "--dataset", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert grid_cli.main(["--out", str(tmp_path), "--test-img", str(tmp_path)]) == 2
    assert "--test-ann" in capsys.readouterr().err
