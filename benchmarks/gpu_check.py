"""``make gpu-check``: everything that needs a GPU, in one unattended run of at most ~10 minutes.

On a machine with an NVIDIA GPU, each step in its own process (group) with its own timeout and
its output captured; a failing step does not stop the independent steps. Three phases:

1. alone, in order:
   build       python setup.py build_ext --inplace, TORCH_CUDA_ARCH_LIST from the GPU's compute
               capability, MAX_JOBS from the core count, FORCE_CUDA=1
   import      the built extension loads and has CUDA kernels
2. at the same time (correctness checks, no timing):
   stream      the CUDA and Triton backends on a non-default stream (gpu_check_driver.py)
   device1     tensors on cuda:1 (only with two or more GPUs)
   test_cuda   pytest tests/test_cuda.py tests/test_extreme_values.py on the GPU
   sanitizer   compute-sanitizer memcheck, racecheck, synccheck, initcheck (each one the
               toolkit has) on gpu_check_driver.py smoke: both CUDA kernels, forward and
               backward, NCHW and channels_last, fp32 and bf16, small shapes
   test_triton pytest tests/test_triton.py tests/test_blocks.py on the GPU
   static      benchmarks/gpu_static.py for shape A on this GPU's entry (CPU only)
3. alone, in order (timings):
   bench       benchmarks/bench_op.py --device cuda (cuda and triton backends against eager and
               torch.compile), N=2 C=512 H=W=80 (shape A), fp32, then bf16

It writes ``<output-dir>/gpu_check.json`` (every step's command, status, time and output tail;
the bench and static results; the static estimates next to the measured times) and one log per
step, prints a summary, and exits 1 if any step failed, timed out or was cut by the time
budget. Without a GPU it says so and exits 0.

    python benchmarks/gpu_check.py [--output-dir runs/gpu_check] [--budget-s 600] [--skip-build]
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TAIL = 20000  # characters of each step's output kept in the JSON
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")
BENCH_RESERVE_S = 200  # kept for the benchmarks when phase 2 sets its timeouts


@dataclass
class Step:
    name: str
    cmd: list
    timeout: float  # seconds, before the budget cut
    needs: tuple = ()  # steps that must have passed
    env: dict = field(default_factory=dict)
    status: str = "pending"  # passed | failed | timeout | skipped | unavailable | not run
    reason: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    output_tail: str = ""
    log: str = ""


class Runner:
    """Runs steps in order under one time budget; keeps every result."""

    def __init__(self, out_dir: str, budget_s: float):
        self.out_dir = out_dir
        self.deadline = time.monotonic() + budget_s
        self.steps: list[Step] = []

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _blocked(self, step: Step) -> str:
        done = {s.name: s.status for s in self.steps}
        bad = [n for n in step.needs if done.get(n) not in ("passed", "not run")]
        return f"needs {', '.join(bad)}, which did not pass" if bad else ""

    def prepare(self, step: Step, reserve: float = 0.0) -> bool:
        """Record the step; False when it must not run (a dependency failed, no time left)."""
        self.steps.append(step)
        step.log = os.path.join(self.out_dir, f"{step.name}.log")
        blocked = self._blocked(step)
        if blocked:
            step.status, step.reason = "skipped", blocked
            return False
        if self.remaining() - reserve < 15:
            step.status, step.reason = "skipped", "the time budget is used up"
            return False
        return True

    def run(self, step: Step, reserve: float = 0.0) -> Step:
        """Run one step; its timeout leaves `reserve` seconds of the budget to later phases."""
        if step.status == "not run":
            self.steps.append(step)
        elif self.prepare(step, reserve):
            execute(step, min(step.timeout, self.remaining() - reserve - 5))
        return step

    def run_together(self, steps: list[Step], reserve: float = 0.0) -> None:
        """Independent steps at the same time, each with its own timeout."""
        todo = []
        for s in steps:
            if s.status in ("unavailable", "not run"):  # decided before running
                self.steps.append(s)
            elif self.prepare(s, reserve):
                todo.append(s)
        limit = self.remaining() - reserve - 5
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            futures = [(s, pool.submit(execute, s, min(s.timeout, limit))) for s in todo]
        for s, fut in futures:
            if fut.exception() is not None:
                s.status, s.reason = "failed", f"the runner failed: {fut.exception()!r}"
            if s.name.startswith("sanitizer_"):
                _classify_sanitizer(s)


def execute(step: Step, timeout: float) -> None:
    """Run step.cmd in its own process group with a timeout (the whole group is killed, so
    no nvcc, pytest or sanitizer child outlives it); output into step.log and output_tail."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
    t0 = time.monotonic()
    with open(step.log, "w") as log:
        log.write(f"$ {' '.join(step.cmd)}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                step.cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            step.status, step.reason = "failed", f"could not start: {e}"
        else:
            try:
                step.returncode = proc.wait(timeout=max(timeout, 1))
                step.status = "passed" if step.returncode == 0 else "failed"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                step.status, step.reason = "timeout", f"killed after {timeout:.0f} s"
    step.seconds = time.monotonic() - t0
    with open(step.log, errors="replace") as log:
        step.output_tail = log.read()[-TAIL:]


# ----------------------------------------------------------------------------- the machine


def gpu_info() -> dict | None:
    """None without a usable CUDA GPU; else what the steps need to know about the machine."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = torch.cuda.device_count()
    caps = sorted({torch.cuda.get_device_capability(i) for i in range(n)})
    return {
        "devices": [torch.cuda.get_device_name(i) for i in range(n)],
        "capabilities": [f"{a}.{b}" for a, b in caps],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }


def find_cuda_home() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
            return home
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None


def find_sanitizer(cuda_home: str | None) -> str | None:
    cands = [os.environ.get("COMPUTE_SANITIZER_BIN"), shutil.which("compute-sanitizer")]
    if cuda_home:
        cands += [
            os.path.join(cuda_home, "bin", "compute-sanitizer"),
            os.path.join(cuda_home, "compute-sanitizer", "compute-sanitizer"),
        ]
    cands += sorted(glob.glob("/usr/local/cuda*/bin/compute-sanitizer"), reverse=True)
    return next((c for c in cands if c and os.access(c, os.X_OK)), None)


def triton_version() -> str | None:
    try:
        import triton

        return triton.__version__
    except Exception as e:  # noqa: BLE001  (any import failure means: no Triton here)
        return f"not importable: {e}"


# ----------------------------------------------------------------------------- the steps


def _pytest(*paths: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", *paths]


def build_steps(info: dict) -> list[Step]:
    """Phase 1: build in place for this machine's GPUs, then check the extension loads."""
    py = sys.executable
    cuda_home = find_cuda_home()
    env = {
        "TORCH_CUDA_ARCH_LIST": ";".join(info["capabilities"]),
        "MAX_JOBS": str(info["cpus"] or 4),
        "FORCE_CUDA": "1",
        **({"CUDA_HOME": cuda_home} if cuda_home else {}),
    }
    has_cuda = "import lgf_ops, sys; b = lgf_ops.available_backends(); print(b); "
    has_cuda += "sys.exit(0 if 'cuda' in b else 1)"
    return [
        Step("build", [py, "setup.py", "build_ext", "--inplace"], 330, env=env),
        Step("import", [py, "-c", has_cuda], 60, needs=("build",)),
    ]


def check_steps(info: dict, out_dir: str, gpu_entry: str) -> list[Step]:
    """Phase 2, run together: correctness on the GPU, and the static report (CPU)."""
    driver = [sys.executable, "benchmarks/gpu_check_driver.py"]
    steps = [Step("stream", driver + ["stream"], 120, ("import",))]
    if len(info["devices"]) > 1:
        steps.append(Step("device1", driver + ["device1"], 120, ("import",)))
    cuda_tests = _pytest("tests/test_cuda.py", "tests/test_extreme_values.py")
    steps.append(Step("test_cuda", cuda_tests, 300, ("import",)))
    steps += sanitizer_steps()
    steps.append(Step("test_triton", _pytest("tests/test_triton.py", "tests/test_blocks.py"), 300))
    static = [sys.executable, "benchmarks/gpu_static.py", "--shape", "A", "--gpu", gpu_entry]
    steps.append(Step("static", static + ["--json", os.path.join(out_dir, "gpu_static.json")], 300))
    return steps


def sanitizer_steps() -> list[Step]:
    san = find_sanitizer(find_cuda_home())
    driver = [sys.executable, "benchmarks/gpu_check_driver.py", "smoke"]
    env = {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}  # so memcheck sees each tensor's own bounds
    steps = []
    for tool in SANITIZER_TOOLS:
        cmd = [san or "compute-sanitizer", "--tool", tool, "--error-exitcode", "99"]
        cmd += ["--print-limit", "20"] + driver
        step = Step(f"sanitizer_{tool}", cmd, 240, ("import",), env)
        if san is None:
            step.status, step.reason = "unavailable", "compute-sanitizer not found in this toolkit"
        steps.append(step)
    return steps


def _classify_sanitizer(step: Step) -> None:
    """A sanitizer that says it cannot run here (its own "=========" lines: the device or the
    tool is not supported) is unavailable, not a failure."""
    unsupported = ("Device not supported", "not supported on this", "Unrecognized", "Unknown tool")
    said = [
        line
        for line in step.output_tail.splitlines()
        if line.startswith("=========") and any(u in line for u in unsupported)
    ]
    if step.status != "passed" and said:
        step.status, step.reason = "unavailable", said[0]


def bench_steps(out_dir: str) -> list[Step]:
    """Phase 3, one at a time: the timings."""
    steps = []
    for dtype in ("float32", "bfloat16"):
        cmd = [sys.executable, "benchmarks/bench_op.py", "--device", "cuda", "--dtype", dtype]
        cmd += ["--reps", "10", "--json", os.path.join(out_dir, f"bench_op_{dtype}.json")]
        steps.append(Step(f"bench_{dtype}", cmd, 240))
    return steps


# ----------------------------------------------------------------------------- results


def gpu_entry(info: dict) -> str:
    """The static report's GPU entry closest to this machine's first GPU."""
    name = info["devices"][0]
    for entry in ("H200", "H100", "A100"):
        if entry in name:
            return entry
    return "H100" if info["capabilities"][0].startswith("9") else "A100"


def _load_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _bench_rows(out_dir: str):
    """(backend, layout, dtype, row) of the fused variants of bench_op's JSON files."""
    for dtype in ("float32", "bfloat16"):
        bench = _load_json(os.path.join(out_dir, f"bench_op_{dtype}.json")) or {"rows": []}
        for r in bench["rows"]:
            parts = r["variant"].split()  # e.g. "lgf cuda channels_last"
            if r.get("fused") and len(parts) == 3:
                layout = "nchw" if parts[2] == "NCHW" else "channels_last"
                yield parts[1], layout, dtype, r


def comparison(out_dir: str) -> list[dict]:
    """Static est_us next to bench_op's measured medians, per backend, layout, dtype, direction."""
    static = _load_json(os.path.join(out_dir, "gpu_static.json")) or []
    index = {
        (s["backend"], s["layout"], s["dtype"], s["direction"]): s
        for s in static
        if s["shape"] == "A"
    }
    rows = []
    for backend, layout, dtype, r in _bench_rows(out_dir):
        for direction, key in (("forward", "fwd_ms"), ("backward", "bwd_ms")):
            measured = r[key] * 1e3
            row = {
                "backend": backend,
                "layout": layout,
                "dtype": dtype,
                "direction": direction,
                "measured_us": measured,
            }
            est = index.get((backend, layout, dtype, direction))
            if est:
                row["est_us"] = est["est_us"]
                row["roofline_us"] = est["roofline_us"]
                row["measured_over_est"] = measured / est["est_us"]
            rows.append(row)
    return rows


def print_summary(report: dict) -> None:
    print("\n=== gpu-check summary ===")
    print(f"GPU: {', '.join(report['machine']['devices'])}  torch {report['machine']['torch']}")
    for s in report["steps"]:
        why = f"  ({s['reason']})" if s["reason"] else ""
        print(f"  {s['name']:20s} {s['status']:11s} {s['seconds']:6.1f} s{why}")
    if report["comparison"]:
        print("\nstatic ESTIMATE (shape A) next to the measured median, microseconds:")
        head = f"{'backend':7s} {'layout':13s} {'dtype':8s} {'dir':8s} {'est':>8s}"
        print(f"  {head} {'measured':>9s} {'roofline':>9s}")
        for r in report["comparison"]:
            est = f"{r['est_us']:8.1f}" if "est_us" in r else "       -"
            roof = f"{r['roofline_us']:9.1f}" if "roofline_us" in r else "        -"
            what = f"{r['backend']:7s} {r['layout']:13s} {r['dtype']:8s} {r['direction']:8s}"
            print(f"  {what} {est} {r['measured_us']:9.1f} {roof}")
    print(f"\n{'OK' if report['ok'] else 'FAILED'}: see {report['json']} and the step logs")


def no_gpu(out_dir: str, reason: str) -> int:
    print(f"gpu-check: no CUDA GPU here ({reason}); nothing to check, exiting 0.")
    report = {"status": "no_gpu", "reason": reason, "ok": True}
    with open(os.path.join(out_dir, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    return 0


def _report(step: Step) -> None:
    print(f"  {step.name}: {step.status} ({step.seconds:.0f} s)", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output-dir", default=os.path.join(REPO, "runs", "gpu_check"))
    p.add_argument("--budget-s", type=float, default=600.0, help="total time budget (seconds)")
    p.add_argument(
        "--skip-build",
        action="store_true",
        help="use the extension already built in place (e.g. by an earlier gpu-check)",
    )
    args = p.parse_args(argv)
    out_dir = os.path.abspath(args.output_dir)
    os.makedirs(out_dir, exist_ok=True)
    try:
        info = gpu_info()
    except ImportError as e:
        print(f"gpu-check: torch is not importable ({e})")
        return 1
    if info is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        why = "torch.cuda.is_available() is False"
        return no_gpu(
            out_dir, why + (f", CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "")
        )
    info["triton"] = triton_version()
    info["cuda_home"] = find_cuda_home()
    info["compute_sanitizer"] = find_sanitizer(info["cuda_home"])
    print(
        f"gpu-check on {info['devices']} (sm {info['capabilities']}), budget {args.budget_s:.0f} s"
    )
    runner = Runner(out_dir, args.budget_s)
    run_all(runner, info, out_dir, args.skip_build)
    report = write_report(runner, info, out_dir, args.budget_s)
    print_summary(report)
    return 0 if report["ok"] else 1


def run_all(runner: Runner, info: dict, out_dir: str, skip_build: bool = False) -> None:
    for step in build_steps(info):
        if skip_build and step.name == "build":
            step.status, step.reason = "not run", "--skip-build"
        _report(runner.run(step, reserve=BENCH_RESERVE_S))
    checks = check_steps(info, out_dir, gpu_entry(info))
    runner.run_together(checks, reserve=BENCH_RESERVE_S)
    for step in checks:
        _report(step)
    for step in bench_steps(out_dir):
        _report(runner.run(step))


def write_report(runner: Runner, info: dict, out_dir: str, budget_s: float) -> dict:
    report = {
        "status": "ran",
        "machine": info,
        "budget_s": budget_s,
        "steps": [asdict(s) for s in runner.steps],
        "bench": {
            d: _load_json(os.path.join(out_dir, f"bench_op_{d}.json"))
            for d in ("float32", "bfloat16")
        },
        "static": _load_json(os.path.join(out_dir, "gpu_static.json")),
        "comparison": comparison(out_dir),
        "ok": all(s.status in ("passed", "unavailable", "not run") for s in runner.steps),
        "json": os.path.join(out_dir, "gpu_check.json"),
    }
    with open(report["json"], "w") as f:
        json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    sys.exit(main())
