"""The benchmark scripts run end to end on tiny shapes (their numbers are not checked here)."""

import json
import os
import sys

import pytest
import torch

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def test_bench_op_tiny(tmp_path):
    import bench_op

    out = tmp_path / "op.json"
    result = bench_op.main(
        [
            "-N",
            "1",
            "-C",
            "4",
            "-H",
            "9",
            "-W",
            "7",
            "--reps",
            "2",
            "--warmup",
            "1",
            "--no-compile",
            "--json",
            str(out),
        ]
    )
    data = json.loads(out.read_text())
    names = [r["variant"] for r in data["rows"]]
    assert "eager NCHW" in names and "eager channels_last" in names
    fused = [r for r in result["rows"] if r["fused"]]
    assert fused, "no fused backend was timed"
    for r in data["rows"]:
        assert r["fwd_ms"] > 0 and r["bwd_ms"] > 0 and r["full_ms"] > 0 and r["speedup_full"] > 0
    # memory held for backward by the fused op: the inputs only (x dominates)
    x_mb = 1 * 4 * 9 * 7 * 4 / 2**20
    for r in fused:
        assert r["saved_MB"] < x_mb + 0.01


def test_bench_op_threads_option(tmp_path):
    """--threads sets the CPU thread count for the run only; per-element cost is reported."""
    import bench_op

    before = torch.get_num_threads()
    result = bench_op.main(
        [
            "-N",
            "1",
            "-C",
            "3",
            "-H",
            "5",
            "-W",
            "6",
            "--reps",
            "1",
            "--warmup",
            "1",
            "--no-plain",
            "--threads",
            "1",
            "--json",
            str(tmp_path / "op.json"),
        ]
    )
    assert result["config"]["threads"] == 1
    assert torch.get_num_threads() == before
    for r in result["rows"]:
        assert r["fwd_ns_per_elem_thread"] == pytest.approx(r["fwd_ms"] * 1e6 / (1 * 3 * 5 * 6))
    with pytest.raises(SystemExit):
        bench_op.main(["--threads", "0"])


def test_bench_op_rejects_missing_backend():
    import bench_op

    with pytest.raises(SystemExit):
        bench_op.main(["--backend", "does-not-exist", "--reps", "1"])


def test_bench_model_tiny(tmp_path):
    import bench_model

    out = tmp_path / "model.json"
    bench_model.main(
        [
            "--backbone",
            "resnet18",
            "--img-size",
            "64",
            "--batch-size",
            "1",
            "--reps",
            "1",
            "--json",
            str(out),
        ]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["variant"] for r in rows] == ["baseline", "lgf (fused)", "lgf (reference)"]
    assert rows[1]["params_M"] > rows[0]["params_M"]
    assert all(r["step_ms"] > 0 and r["infer_ms"] > 0 for r in rows)
