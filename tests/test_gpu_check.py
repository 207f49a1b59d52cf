"""``make gpu-check`` (benchmarks/gpu_check.py) without a GPU: the no-GPU exit, and the step
runner, the step lists and the report on stand-in commands, so that the GPU run has the best
chance to work the first time."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gpu_check  # noqa: E402

PY = sys.executable
FAKE_GPU = {
    "devices": ["NVIDIA H200", "NVIDIA H200"],
    "capabilities": ["9.0"],
    "torch": "x",
    "torch_cuda": "13.0",
    "python": "3.12",
    "cpus": 16,
}


def _hidden_cuda_env():
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    cmd = [PY, "benchmarks/gpu_check.py", "--output-dir", str(tmp_path)]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_hidden_cuda_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA GPU here" in proc.stdout and "exiting 0" in proc.stdout
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["status"] == "no_gpu" and "CUDA_VISIBLE_DEVICES=''" in report["reason"]


def test_driver_refuses_without_a_gpu():
    cmd = [PY, "benchmarks/gpu_check_driver.py", "smoke"]
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_hidden_cuda_env(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1 and "no CUDA GPU visible" in proc.stdout


def _step(name, code, timeout=60, needs=()):
    return gpu_check.Step(name, [PY, "-c", code], timeout, needs)


def test_runner_records_failures_dependencies_timeouts(tmp_path):
    r = gpu_check.Runner(str(tmp_path), budget_s=120)
    ok = r.run(_step("ok", "print('fine')"))
    bad = r.run(_step("bad", "import sys; print('broken'); sys.exit(3)"))
    dep = r.run(_step("dep", "print('never')", needs=("bad",)))
    slow = r.run(_step("slow", "import time; time.sleep(30)", timeout=2))
    after = r.run(_step("after", "print('still runs')"))
    assert (ok.status, ok.returncode, "fine" in ok.output_tail) == ("passed", 0, True)
    assert (bad.status, bad.returncode, "broken" in bad.output_tail) == ("failed", 3, True)
    assert dep.status == "skipped" and "bad" in dep.reason and dep.returncode is None
    assert slow.status == "timeout" and slow.seconds < 20
    assert after.status == "passed"
    assert os.path.exists(ok.log) and "fine" in open(ok.log).read()


def test_runner_stops_starting_steps_when_the_budget_is_spent(tmp_path):
    r = gpu_check.Runner(str(tmp_path), budget_s=10)  # under the 15 s a step needs to start
    s = r.run(_step("late", "print(1)"))
    assert s.status == "skipped" and "budget" in s.reason


def test_build_steps_take_arch_and_jobs_from_the_machine(tmp_path):
    steps = {s.name: s for s in gpu_check.build_steps(FAKE_GPU, str(tmp_path))}
    assert list(steps) == ["build", "import", "stream", "device1", "test_cuda"]
    env = steps["build"].env
    assert env["TORCH_CUDA_ARCH_LIST"] == "9.0" and env["MAX_JOBS"] == "16"
    assert env["FORCE_CUDA"] == "1"
    one = dict(FAKE_GPU, devices=["NVIDIA H200"])
    assert "device1" not in [s.name for s in gpu_check.build_steps(one, str(tmp_path))]
    assert all(steps[n].needs for n in ("import", "stream", "device1", "test_cuda"))


def test_sanitizer_steps(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_check, "find_sanitizer", lambda home: None)
    steps = gpu_check.sanitizer_steps(str(tmp_path))
    assert [s.name for s in steps] == [f"sanitizer_{t}" for t in gpu_check.SANITIZER_TOOLS]
    assert all(s.status == "unavailable" and "not found" in s.reason for s in steps)
    monkeypatch.setattr(gpu_check, "find_sanitizer", lambda home: "/opt/cs/compute-sanitizer")
    for tool, s in zip(gpu_check.SANITIZER_TOOLS, gpu_check.sanitizer_steps(str(tmp_path))):
        assert s.status == "pending" and s.cmd[:3] == ["/opt/cs/compute-sanitizer", "--tool", tool]
        assert "--error-exitcode" in s.cmd and s.cmd[-1] == "smoke"
    failed = gpu_check.Step("sanitizer_memcheck", [], 1, status="failed")
    failed.output_tail = "========= Error: Device not supported\n"
    gpu_check._classify_sanitizer(failed)
    assert failed.status == "unavailable" and "Device not supported" in failed.reason


def test_gpu_entry():
    assert gpu_check.gpu_entry(FAKE_GPU) == "H200"
    assert gpu_check.gpu_entry(dict(FAKE_GPU, devices=["NVIDIA A100-SXM4-80GB"])) == "A100"
    odd = dict(FAKE_GPU, devices=["NVIDIA L40S"], capabilities=["8.9"])
    assert gpu_check.gpu_entry(odd) == "A100"


def test_comparison_puts_estimates_next_to_measurements(tmp_path):
    bench = {
        "rows": [
            {"variant": "eager NCHW", "fused": False, "fwd_ms": 1.0, "bwd_ms": 2.0},
            {"variant": "lgf cuda NCHW", "fused": True, "fwd_ms": 0.05, "bwd_ms": 0.2},
            {"variant": "lgf triton channels_last", "fused": True, "fwd_ms": 0.04, "bwd_ms": 0.3},
        ]
    }
    (tmp_path / "bench_op_float32.json").write_text(json.dumps(bench))
    key = {"backend": "cuda", "layout": "nchw", "dtype": "float32", "shape": "A"}
    static = [
        dict(key, direction=d, est_us=e, roofline_us=10.0)
        for d, e in (("forward", 25.0), ("backward", 100.0))
    ]
    (tmp_path / "gpu_static.json").write_text(json.dumps(static))
    rows = gpu_check.comparison(str(tmp_path))
    assert len(rows) == 4
    fwd = next(r for r in rows if (r["backend"], r["direction"]) == ("cuda", "forward"))
    assert fwd["measured_us"] == pytest.approx(50.0) and fwd["measured_over_est"] == 2.0
    tri = [r for r in rows if r["backend"] == "triton"]
    assert all(r["layout"] == "channels_last" and "est_us" not in r for r in tri)


def test_main_runs_every_step_and_fails_on_any_failure(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "gpu_info", lambda: dict(FAKE_GPU))
    monkeypatch.setattr(
        gpu_check, "build_steps", lambda info, out: [_step("build", "print('built')")]
    )
    monkeypatch.setattr(
        gpu_check,
        "sanitizer_steps",
        lambda out: [_step("sanitizer_memcheck", "print('ERROR SUMMARY: 0 errors')")],
    )
    later = [_step("test_triton", "import sys; sys.exit(1)"), _step("static", "print('s')")]
    monkeypatch.setattr(gpu_check, "later_steps", lambda info, out, entry: later)
    assert gpu_check.main(["--output-dir", str(tmp_path), "--budget-s", "120"]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status == {
        "build": "passed",
        "sanitizer_memcheck": "passed",
        "test_triton": "failed",
        "static": "passed",
    }
    assert report["ok"] is False and report["machine"]["devices"] == FAKE_GPU["devices"]
    out = capsys.readouterr().out
    assert "gpu-check summary" in out and "FAILED" in out
    later[0] = _step("test_triton", "print('ok')")
    assert gpu_check.main(["--output-dir", str(tmp_path), "--budget-s", "120"]) == 0
