"""``make gpu-check`` (benchmarks/gpu_check.py) without a GPU: the no-GPU exit, and the step
runner, the step lists and the report on stand-in commands, so that the GPU run has the best
chance to work the first time."""

import json
import os
import subprocess
import sys

import pytest
import torch

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


def test_driver_smoke_checks_run_on_the_cpu_kernels():
    """The smoke case's inputs, stride-0 dy and reference comparison, on the CPU kernels."""
    from lgf_ops import _cpp

    if not _cpp.has_cpu_kernel():
        pytest.skip("the extension is not built: no CPU kernels")
    cmd = [PY, "benchmarks/gpu_check_driver.py", "smoke", "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok: smoke") == 8 and "PASSED" in proc.stdout


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


def test_steps_take_arch_and_jobs_from_the_machine(tmp_path):
    build = {s.name: s for s in gpu_check.build_steps(FAKE_GPU)}
    assert list(build) == ["build", "import"] and build["import"].needs == ("build",)
    env = build["build"].env
    assert env["TORCH_CUDA_ARCH_LIST"] == "9.0" and env["MAX_JOBS"] == "16"
    assert env["FORCE_CUDA"] == "1"
    checks = {s.name: s for s in gpu_check.check_steps(FAKE_GPU, str(tmp_path), "H200")}
    assert {"stream", "device1", "test_cuda", "test_triton", "static"} <= set(checks)
    assert {f"sanitizer_{t}" for t in gpu_check.SANITIZER_TOOLS} <= set(checks)
    assert all(checks[n].needs == ("import",) for n in ("stream", "device1", "test_cuda"))
    assert checks["static"].cmd[-2] == "--json" and "H200" in checks["static"].cmd
    one = dict(FAKE_GPU, devices=["NVIDIA H200"])
    assert "device1" not in [s.name for s in gpu_check.check_steps(one, str(tmp_path), "H200")]
    bench = gpu_check.bench_steps(str(tmp_path))
    assert [s.name for s in bench] == ["bench_float32", "bench_bfloat16"]
    assert all("--device" in s.cmd and "cuda" in s.cmd for s in bench)


def test_steps_run_together_with_their_own_timeouts(tmp_path):
    r = gpu_check.Runner(str(tmp_path), budget_s=120)
    steps = [_step(f"s{k}", "import time; time.sleep(1.5)") for k in range(4)]
    steps.append(_step("slow", "import time; time.sleep(30)", timeout=2))
    t0 = __import__("time").monotonic()
    r.run_together(steps)
    assert __import__("time").monotonic() - t0 < 10  # not 4 x 1.5 s + 30 s
    assert [s.status for s in steps] == ["passed"] * 4 + ["timeout"]
    late = gpu_check.Runner(str(tmp_path), budget_s=100)
    (cut,) = [_step("cut", "print(1)")]
    late.run_together([cut], reserve=90)
    assert cut.status == "skipped" and "budget" in cut.reason


def test_sanitizer_steps(monkeypatch):
    monkeypatch.setattr(gpu_check, "find_sanitizer", lambda home: None)
    steps = gpu_check.sanitizer_steps()
    assert [s.name for s in steps] == [f"sanitizer_{t}" for t in gpu_check.SANITIZER_TOOLS]
    assert all(s.status == "unavailable" and "not found" in s.reason for s in steps)
    monkeypatch.setattr(gpu_check, "find_sanitizer", lambda home: "/opt/cs/compute-sanitizer")
    for tool, s in zip(gpu_check.SANITIZER_TOOLS, gpu_check.sanitizer_steps()):
        assert s.status == "pending" and s.cmd[:3] == ["/opt/cs/compute-sanitizer", "--tool", tool]
        assert "--error-exitcode" in s.cmd and s.cmd[-1] == "smoke"
    failed = gpu_check.Step("sanitizer_memcheck", [], 1, status="failed")
    failed.output_tail = "========= Error: Device not supported\n"
    gpu_check._classify_sanitizer(failed)
    assert failed.status == "unavailable" and "Device not supported" in failed.reason
    real = gpu_check.Step("sanitizer_racecheck", [], 1, status="failed")
    real.output_tail = (
        "MISMATCH ... Device not supported by us\n========= ERROR SUMMARY: 2 errors\n"
    )
    gpu_check._classify_sanitizer(real)
    assert real.status == "failed"


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
    monkeypatch.setattr(gpu_check, "build_steps", lambda info: [_step("build", "print('built')")])
    checks = [
        _step("sanitizer_memcheck", "print('ERROR SUMMARY: 0 errors')"),
        _step("test_triton", "import sys; sys.exit(1)"),
    ]
    monkeypatch.setattr(gpu_check, "check_steps", lambda info, out, entry: list(checks))
    monkeypatch.setattr(gpu_check, "bench_steps", lambda out: [_step("bench_x", "print('b')")])
    monkeypatch.setattr(gpu_check, "BENCH_RESERVE_S", 10)
    assert gpu_check.main(["--output-dir", str(tmp_path), "--budget-s", "120"]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status == {
        "build": "passed",
        "sanitizer_memcheck": "passed",
        "test_triton": "failed",
        "bench_x": "passed",
    }
    assert report["ok"] is False and report["machine"]["devices"] == FAKE_GPU["devices"]
    out = capsys.readouterr().out
    assert "gpu-check summary" in out and "FAILED" in out
    checks[1] = _step("test_triton", "print('ok')")
    assert gpu_check.main(["--output-dir", str(tmp_path), "--budget-s", "120"]) == 0
    args = ["--output-dir", str(tmp_path), "--budget-s", "120", "--skip-build"]
    assert gpu_check.main(args) == 0
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert (steps[0]["name"], steps[0]["status"]) == ("build", "not run")


def test_driver_comparison_catches_a_wrong_result():
    import gpu_check_driver as driver

    inputs = driver.make_inputs(torch.float32, "channels_last", "cpu")
    dy = torch.randn_like(inputs[0])
    want = driver.reference(inputs, dy)
    assert driver.compare("same", want, want, 2e-5)
    wrong = [t.clone() for t in want]
    wrong[2] = wrong[2] * 1.001  # dweight 0.1% off: 50x the fp32 bound
    assert not driver.compare("dweight off", wrong, want, 2e-5)
