"""``make gpu-check``: everything that needs a GPU, in one unattended run of at most ~10 minutes.

On a machine with an NVIDIA GPU it runs, each step in its own process with its own timeout and
its output captured (a failing step does not stop the independent ones after it):

  build       python setup.py build_ext --inplace, TORCH_CUDA_ARCH_LIST from the GPU's compute
              capability, MAX_JOBS from the core count, FORCE_CUDA=1
  import      the built extension loads and has CUDA kernels
  stream      the CUDA and Triton backends on a non-default stream (gpu_check_driver.py)
  device1     tensors on cuda:1 (only with two or more GPUs)
  test_cuda   pytest tests/test_cuda.py on the GPU
  sanitizer   compute-sanitizer memcheck, racecheck, synccheck, initcheck (each one the
              toolkit has) on gpu_check_driver.py smoke: both CUDA kernels, forward and
              backward, NCHW and channels_last, fp32 and bf16, small shapes
  test_triton pytest tests/test_triton.py tests/test_blocks.py on the GPU
  bench       benchmarks/bench_op.py --device cuda (cuda and triton backends against eager and
              torch.compile), N=2 C=512 H=W=80 (shape A), fp32 and bf16
  static      benchmarks/gpu_static.py for shape A on this GPU's entry, and a table of the
              static estimates next to the measured times

It writes ``<output-dir>/gpu_check.json`` (every step's command, status, time and output tail;
the bench and static results; the comparison) and one log per step, prints a summary, and
exits 1 if any step failed or was cut by the time budget. Without a GPU it says so and exits 0.

    python benchmarks/gpu_check.py [--output-dir runs/gpu_check] [--budget-s 600]
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TAIL = 20000  # characters of each step's output kept in the JSON
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")


@dataclass
class Step:
    name: str
    cmd: list
    timeout: float  # seconds, before the budget cut
    needs: tuple = ()  # steps that must have passed
    env: dict = field(default_factory=dict)
    status: str = "pending"  # passed | failed | timeout | skipped | unavailable
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
        bad = [n for n in step.needs if done.get(n) != "passed"]
        return f"needs {', '.join(bad)}, which did not pass" if bad else ""

    def prepare(self, step: Step) -> bool:
        """Record the step; False when it must not run (a dependency failed, no time left)."""
        self.steps.append(step)
        step.log = os.path.join(self.out_dir, f"{step.name}.log")
        blocked = self._blocked(step)
        if blocked:
            step.status, step.reason = "skipped", blocked
            return False
        if self.remaining() < 15:
            step.status, step.reason = "skipped", "the time budget is used up"
            return False
        return True

    def run(self, step: Step) -> Step:
        if not self.prepare(step):
            return step
        execute(step, min(step.timeout, self.remaining() - 5))
        return step


def execute(step: Step, timeout: float) -> None:
    """Run step.cmd with a timeout; output into step.log and step.output_tail."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
    t0 = time.monotonic()
    with open(step.log, "w") as log:
        log.write(f"$ {' '.join(step.cmd)}\n")
        log.flush()
        try:
            proc = subprocess.run(
                step.cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(timeout, 1),
                stdin=subprocess.DEVNULL,
            )
            step.returncode = proc.returncode
            step.status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            step.status, step.reason = "timeout", f"killed after {timeout:.0f} s"
        except OSError as e:
            step.status, step.reason = "failed", f"could not start: {e}"
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


def build_steps(info: dict, out_dir: str) -> list[Step]:
    py = sys.executable
    arch = ";".join(info["capabilities"])
    cuda_home = find_cuda_home()
    build_env = {
        "TORCH_CUDA_ARCH_LIST": arch,
        "MAX_JOBS": str(info["cpus"] or 4),
        "FORCE_CUDA": "1",
        **({"CUDA_HOME": cuda_home} if cuda_home else {}),
    }
    has_cuda = "import lgf_ops, sys; b = lgf_ops.available_backends(); print(b); "
    has_cuda += "sys.exit(0 if 'cuda' in b else 1)"
    pytest = [py, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    steps = [
        Step("build", [py, "setup.py", "build_ext", "--inplace"], 330, env=build_env),
        Step("import", [py, "-c", has_cuda], 60, needs=("build",)),
        Step("stream", [py, "benchmarks/gpu_check_driver.py", "stream"], 120, ("import",)),
    ]
    if len(info["devices"]) > 1:
        steps.append(
            Step("device1", [py, "benchmarks/gpu_check_driver.py", "device1"], 120, ("import",))
        )
    steps.append(Step("test_cuda", pytest + ["tests/test_cuda.py"], 240, ("import",)))
    return steps


def sanitizer_steps(out_dir: str) -> list[Step]:
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


def run_parallel(runner: Runner, steps: list[Step]) -> None:
    """Independent processes at once (the sanitizer tools); each keeps its own timeout."""
    todo = []
    for s in steps:
        if s.status == "unavailable":
            runner.steps.append(s)
        elif runner.prepare(s):
            todo.append(s)
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        for s in todo:
            pool.submit(execute, s, min(s.timeout, runner.remaining() - 5))
    for s in todo:
        _classify_sanitizer(s)


def _classify_sanitizer(step: Step) -> None:
    """A sanitizer that cannot run on this machine or toolkit is unavailable, not a failure."""
    out = step.output_tail
    unsupported = ("Device not supported", "not supported on this", "Invalid tool", "Unknown tool")
    if step.status != "passed" and any(u in out for u in unsupported):
        step.status = "unavailable"
        step.reason = next(line for line in out.splitlines() if any(u in line for u in unsupported))


def later_steps(info: dict, out_dir: str, gpu_entry: str) -> list[Step]:
    py = sys.executable
    pytest = [py, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    steps = [Step("test_triton", pytest + ["tests/test_triton.py", "tests/test_blocks.py"], 300)]
    for dtype in ("float32", "bfloat16"):
        cmd = [py, "benchmarks/bench_op.py", "--device", "cuda", "--dtype", dtype]
        cmd += ["--reps", "10", "--json", os.path.join(out_dir, f"bench_op_{dtype}.json")]
        steps.append(Step(f"bench_{dtype}", cmd, 240))
    static = [py, "benchmarks/gpu_static.py", "--shape", "A", "--gpu", gpu_entry]
    static += ["--json", os.path.join(out_dir, "gpu_static.json")]
    steps.append(Step("static", static, 240))
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output-dir", default=os.path.join(REPO, "runs", "gpu_check"))
    p.add_argument("--budget-s", type=float, default=600.0, help="total time budget (seconds)")
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
    for step in build_steps(info, out_dir):
        runner.run(step)
        print(f"  {step.name}: {step.status} ({step.seconds:.0f} s)", flush=True)
    run_parallel(runner, sanitizer_steps(out_dir))
    for step in later_steps(info, out_dir, gpu_entry(info)):
        runner.run(step)
        print(f"  {step.name}: {step.status} ({step.seconds:.0f} s)", flush=True)
    ok = all(s.status in ("passed", "unavailable") for s in runner.steps)
    report = {
        "status": "ran",
        "machine": info,
        "budget_s": args.budget_s,
        "steps": [asdict(s) for s in runner.steps],
        "bench": {
            d: _load_json(os.path.join(out_dir, f"bench_op_{d}.json"))
            for d in ("float32", "bfloat16")
        },
        "static": _load_json(os.path.join(out_dir, "gpu_static.json")),
        "comparison": comparison(out_dir),
        "ok": ok,
        "json": os.path.join(out_dir, "gpu_check.json"),
    }
    with open(report["json"], "w") as f:
        json.dump(report, f, indent=1)
    print_summary(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
