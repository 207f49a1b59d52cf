"""Tests of the grid: aggregation arithmetic (lgf/experiments/grid/) and `python -m train.grid`
end to end."""

import csv
import math
import os
import statistics

import pytest

from lgf.experiments.grid.plan import plan_runs
from lgf.experiments.grid.robustness import aggregate_robustness, run_robustness
from lgf.experiments.grid.runs import read_result
from lgf.experiments.grid.tables import (
    REPORT_METRICS,
    aggregate,
    build_report,
    format_value,
    markdown_table,
    mean_std,
    report_metrics,
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


# ---- robustness: mPC and rPC ------------------------------------------------------------------


def _weather_result(mode, seed, clean, corrupted, level="C3"):
    """A run with clean AP `clean` and {split: AP} `corrupted` (other metrics 0.5)."""
    other = {k: 0.5 for k in REPORT_METRICS}
    splits = {"val": {**other, "AP": clean}}
    splits.update({k: {**other, "AP": v} for k, v in corrupted.items()})
    return {"dataset": "d", "insert_level": level, "mode": mode, "seed": seed, "splits": splits}


def test_mpc_and_rpc_of_one_run():
    corrupted = {"fog-s1": 0.30, "fog-s2": 0.20, "snow-s1": 0.25, "snow-s2": 0.05}
    r = run_robustness(
        _weather_result("lgf", 0, 0.40, corrupted)["splits"], ["fog", "snow"], [1, 2]
    )
    assert r["fog"] == pytest.approx(0.25, abs=1e-15) and r["snow"] == pytest.approx(0.15)
    assert r["mPC"] == pytest.approx(0.20, abs=1e-15)  # mean over conditions and severities
    assert r["rPC"] == pytest.approx(0.50, abs=1e-15)  # mPC / clean AP
    # undefined, not a number made up: an AP of -1 (no ground truth), a clean AP of 0
    bad = run_robustness(
        _weather_result("lgf", 0, 0.40, {**corrupted, "fog-s2": -1.0})["splits"],
        ["fog", "snow"],
        [1, 2],
    )
    assert bad["fog"] is None and bad["mPC"] is None and bad["rPC"] is None
    zero = run_robustness(
        _weather_result("lgf", 0, 0.0, corrupted)["splits"], ["fog", "snow"], [1, 2]
    )
    assert zero["mPC"] == pytest.approx(0.2) and zero["rPC"] is None


def test_mpc_and_rpc_mean_and_std_over_seeds():
    results = [
        _weather_result("lgf", 0, 0.40, {"fog-s1": 0.30, "fog-s3": 0.10}),
        _weather_result("lgf", 1, 0.50, {"fog-s1": 0.40, "fog-s3": 0.20}),
        _weather_result("lgf", 2, 0.50, {"fog-s1": 0.40}),  # fog-s3 missing: left out
        _weather_result("baseline", 0, 0.20, {"fog-s1": 0.10, "fog-s3": 0.05}),
    ]
    rows = aggregate_robustness(
        results, ["fog"], [1, 3], [("d", "C3", "baseline"), ("d", "C3", "lgf")]
    )
    assert [(r["mode"], r["n"], r["seeds"]) for r in rows] == [
        ("baseline", 1, [0]),
        ("lgf", 2, [0, 1]),
    ]
    lgf = rows[1]
    mpcs, rpcs = [0.20, 0.30], [0.20 / 0.40, 0.30 / 0.50]  # rPC per run, then over seeds
    assert lgf["mean"]["mPC"] == pytest.approx(statistics.fmean(mpcs), abs=1e-15)
    assert lgf["std"]["mPC"] == pytest.approx(statistics.stdev(mpcs), abs=1e-15)
    assert lgf["mean"]["rPC"] == pytest.approx(statistics.fmean(rpcs), abs=1e-15)
    assert lgf["std"]["rPC"] == pytest.approx(statistics.stdev(rpcs), abs=1e-15)
    assert rows[0]["mean"]["rPC"] == pytest.approx(0.375) and rows[0]["std"]["rPC"] is None


def test_report_has_mpc_and_rpc_columns_in_markdown_and_csv(tmp_path):
    results = [
        _weather_result("lgf", s, 0.4 + 0.1 * s, {"fog-s1": 0.3, "fog-s2": 0.2 + 0.1 * s})
        for s in range(2)
    ]
    results += [_weather_result("baseline", 0, 0.3, {"fog-s1": 0.1})]  # incomplete
    order = [("d", "C3", "baseline"), ("d", "C3", "lgf")]
    text, csv_rows, robust = build_report(
        results, order, 2, "best", conditions=["fog"], severities=[1, 2]
    )
    lines = text.splitlines()
    head = lines.index("| dataset | level | mode | seeds | clean mAP | fog mAP | mPC | rPC |")
    # lgf: mPC per seed 0.25, 0.30 -> 27.50 ± 3.54; rPC 0.625, 0.6 -> 61.25 ± 1.77
    assert lines[head + 3] == (
        "| d | C3 | lgf | 2 | 45.00 ± 7.07 | 27.50 ± 3.54 | 27.50 ± 3.54 | 61.25 ± 1.77 |"
    )
    assert lines[head + 2] == "| d | C3 | baseline | 0 | 30.00 ± - | n/a | n/a | n/a |"
    assert "mPC = mean mAP over the weather conditions and severities" in text
    assert "| fog-s1 mAP | fog-s1 AP_small |" in text  # the per-split table
    path = tmp_path / "r.csv"
    write_csv(csv_rows, str(path), robustness=robust)
    rows = list(csv.DictReader(open(path)))
    val = {r["mode"]: r for r in rows if r["split"] == "val"}
    assert float(val["lgf"]["mPC_mean"]) == pytest.approx(0.275)
    assert float(val["lgf"]["rPC_std"]) == pytest.approx(statistics.stdev([0.625, 0.6]))
    assert val["baseline"]["mPC_mean"] == "" and val["baseline"]["AP_mean"] == "0.3"
    assert all(r["mPC_mean"] == "" for r in rows if r["split"] != "val")


def test_tiny_protocol_columns():
    assert report_metrics("tiny") == ("AP_vt", "AP_t", "AP_s", "AP_m", "AP50", "AP75", "AP")
    assert REPORT_METRICS == report_metrics("coco")
    m = {k: 0.5 for k in report_metrics("tiny")}
    text, _, robust = build_report(
        [_result("lgf", 0, {**m, "AP_vt": -1.0})],
        [("d", "C3", "lgf")],
        1,
        "last",
        area_ranges="tiny",
    )
    assert robust is None and "area ranges = tiny" in text
    assert (
        "| dataset | level | mode | seeds | AP_vt | AP_t | AP_s | AP_m | AP50 | AP75 | mAP |"
        in text
    )
    assert "| d | C3 | lgf | 1/1 | n/a | 50.00 ± - |" in text


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


def test_grid_with_tiny_buckets_two_conditions_two_severities(tmp_path, capsys):
    """--area-ranges tiny reaches training, the grid's own scoring and the tables; two weather
    conditions x two severities give mPC and rPC columns."""
    out = tmp_path / "grid"
    argv = ["--out", str(out), "--modes", "baseline", "--seeds", "0", "--weather"]
    argv += ["--weather-conditions", "fog,frost", "--severities", "2,1", "--eval-batch-size", "2"]
    argv += TRAIN_FLAGS + ["--area-ranges", "tiny", "--best-metric", "AP_s"]
    assert grid_cli.main(argv) == 0
    text = capsys.readouterr().out
    r = read_result(str(out / "synthetic" / "baseline_C3_seed0"), "best")
    assert r["area_ranges"] == "tiny"
    assert set(r["splits"]) == {"val", "fog-s2", "fog-s1", "frost-s2", "frost-s1"}
    assert all("AP_vt" in m and "AP_small" not in m for m in r["splits"].values())
    md = (out / "results_best.md").read_text()
    assert "| clean mAP | fog mAP | frost mAP | mPC | rPC |" in md and "AP_vt" in md
    assert "severities 2,1, weather seed 0" in md and "## weather robustness" in text
    rows = list(csv.DictReader(open(out / "results_best.csv")))
    assert {"AP_vt_mean", "mPC_mean", "rPC_mean"} <= set(rows[0])
    val = next(row for row in rows if row["split"] == "val")
    aps = [r["splits"][s]["AP"] for s in ("fog-s2", "fog-s1", "frost-s2", "frost-s1")]
    assert float(val["mPC_mean"]) == pytest.approx(sum(aps) / 4, abs=1e-12)
    for split in ("frost-s1", "frost-s2"):
        assert (out / "_weather" / "synthetic" / "seed0" / split / "weather.json").is_file()
    assert grid_cli.main(argv) == 0
    assert "finished, skipped" in capsys.readouterr().out
    assert grid_cli.main(argv + ["--severities", "0"]) == 2
    assert "--severities" in capsys.readouterr().err
