"""The demo (issue 19): several seeds, mean ± std, a paired test that says whether a difference
exceeds the seed-to-seed spread, and a report that a rerun reproduces exactly."""

import math
import os
import statistics

import pytest
import torch

from lgf.experiments.demo import DemoSettings, format_report, paired_test, run_demo
from lgf.training.checkpoint import load_checkpoint
from train.demo import main


def test_paired_test_against_a_direct_computation():
    base, other = [0.10, 0.20, 0.30, 0.25], [0.15, 0.22, 0.36, 0.24]
    d = [o - b for b, o in zip(base, other)]
    t = statistics.fmean(d) / (statistics.stdev(d) / math.sqrt(4))
    r = paired_test(base, other)
    assert r["mean"] == pytest.approx(statistics.fmean(d)) and r["t"] == pytest.approx(t)
    assert r["t_crit"] == 3.182 and r["larger"] is (abs(t) > 3.182)
    assert paired_test([0.1, 0.2, 0.3], [0.2, 0.3, 0.4])["larger"] is True  # the same gain thrice
    one = paired_test([0.1], [0.3])
    assert one["larger"] is None and one["std"] is None
    assert paired_test([0.1, 0.2], [0.1, 0.2])["larger"] is False


def _results(ap_base, ap_lgf):
    runs = []
    for mode, aps in (("baseline", ap_base), ("lgf", ap_lgf)):
        for seed, ap in enumerate(aps):
            metrics = {k: ap for k in ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AR100")}
            runs.append({"mode": mode, "seed": seed, "metrics": {**metrics, "AR_small": 0.5}})
    settings = vars(DemoSettings(seeds=list(range(len(ap_base)))))
    return {"settings": settings, "runs": runs, "params_M": {"baseline": 19.0, "lgf": 19.1}}


def test_report_says_whether_the_difference_exceeds_the_spread():
    noisy = format_report(_results([0.10, 0.30, 0.20], [0.25, 0.15, 0.24]))
    assert "| AP | 0.2000 ± 0.1000 | 0.2133 ± 0.0551 | +0.0133 ± 0.1518 |" in noisy
    assert "paired t-test over 3 seeds" in noisy and "is NOT larger than the" in noisy
    clear = format_report(_results([0.10, 0.30, 0.20], [0.15, 0.36, 0.24]))
    assert "The difference is larger than the seed-to-seed spread" in clear
    single = format_report(_results([0.1], [0.3]))
    assert "One seed: no spread to compare with" in single


def _tiny(out, **kw):
    return DemoSettings(
        output_dir=str(out),
        seeds=[0, 1],
        epochs=1,
        img_size=64,
        num_train=4,
        num_val=2,
        warmup_iters=1,
        workers=0,
        **kw,
    )


def test_a_rerun_prints_the_same_numbers_and_seeds_differ(tmp_path, capsys):
    first = run_demo(_tiny(tmp_path / "a"), say=lambda m: None)
    assert main(["--output-dir", str(tmp_path / "b"), "--seeds", "0", "1", "--epochs", "1",
                 "--img-size", "64", "--num-train", "4", "--num-val", "2", "--warmup-iters", "1",
                 "--workers", "0"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    report = format_report(first)
    assert report in printed
    with open(tmp_path / "b" / "demo_table.md") as f:
        assert f.read() == report + "\n"
    assert "paired t-test over 2 seeds" in report
    w = {
        s: load_checkpoint(os.path.join(tmp_path, "a", "lgf", f"seed{s}", "last.pt"))["model"]
        for s in (0, 1)
    }
    assert any(not torch.equal(w[0][k], w[1][k]) for k in w[0])  # the seed changes the run
