"""Static GPU-speed report of the fused LGF op: STATIC ESTIMATES, made without a GPU.

For every CUDA kernel instance in the built extension (lgf_ops/_C*.so, sm_80 + sm_90 SASS)
and every Triton kernel variant the launchers really launch (captured from
lgf_ops.triton_launch.lgf_forward / lgf_backward on meta tensors, specialised as
JITFunction.run would, compiled with triton.compile for sm_80 and sm_90), it reports
registers, spill bytes, shared memory, theoretical occupancy, SASS instructions per output
element, kernel launches per op, workspace bytes, and an estimated time on an H100 SXM and an
A100 next to the memory roofline.

Method (benchmarks/static/*.py hold the details):
  instructions  cuobjdump -sass; basic blocks and natural loops (back edges) of each kernel;
                every block counts once per trip of the loops around it (both arms of an if
                count, predicated instructions count; outlined slow paths behind a
                conditional CALL do not). Trip counts and the blocks/programs launched come
                from a per-kernel plan (static/cuda_plans.py, static/triton_plans.py), written
                per warp (a warp runs a trip while any lane does). instr_per_output =
                32 x warp-instructions / elements: per-tile work (prologue, reductions) is
                amortised over the tile's outputs.
  memory        every 32-byte sector each tile/program touches (halo included), written
                sectors, workspace writes and the host ATen ops' tensors (no L2 reuse).
  time          issue_us = warp-instructions / (SMs x 4 schedulers x clock);
                memory_us = bytes / peak bandwidth; est_us = max of the two;
                roofline_us = (x read + y written; backward x, dy read + dx written) / bandwidth.
  launches      CUDA: the plan's kernels + the ATen ops of the wrapper (ParamTensors and
                finalize_param_grads counted by running the CPU wrapper under a
                TorchDispatchMode, ws.sum from the plan). Triton: counted while the launcher
                runs (kernel launches intercepted + a TorchDispatchMode for its ATen ops).

    python benchmarks/gpu_static.py                        # everything, table on stdout
    python benchmarks/gpu_static.py --json out.json        # and the records as JSON
    python benchmarks/gpu_static.py --backend cuda --shape B --gpu H100
    python benchmarks/gpu_static.py --list-loops --backend cuda --dtype float32
"""

import os
import sys

# Compiling Triton kernels needs triton imported without its interpreter.
_INTERPRET_WAS = os.environ.pop("TRITON_INTERPRET", None)

import argparse  # noqa: E402
import json  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from static import cases  # noqa: E402
from static.cuobjdump import ToolMissing  # noqa: E402
from static.gpus import GPUS  # noqa: E402
from static.gpus import table as gpu_table  # noqa: E402

BACKENDS = ("cuda", "triton")


def _choices(value: str, allowed, what: str) -> list[str]:
    picked = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in picked if v not in allowed]
    if bad or not picked:
        raise argparse.ArgumentTypeError(f"--{what}: {bad or value!r} not in {list(allowed)}")
    return picked


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    def opt(name, allowed, default):
        p.add_argument(
            f"--{name}",
            default=list(default),
            type=lambda v: _choices(v, allowed, name),
            help=f"comma-separated subset of {','.join(allowed)} (default {','.join(default)})",
        )

    opt("backend", BACKENDS, BACKENDS)
    opt("direction", cases.DIRECTIONS, cases.DIRECTIONS)
    opt("dtype", tuple(cases.DTYPES), cases.DEFAULT_DTYPES)
    opt("layout", cases.LAYOUTS, cases.LAYOUTS)
    opt("shape", tuple(cases.SHAPES), tuple(cases.SHAPES))
    opt("gpu", tuple(GPUS), ("H100", "A100"))
    p.add_argument("--json", default=None, help="write the records (a JSON list) here")
    p.add_argument("--list-loops", action="store_true", help="print each kernel's SASS loops")
    p.add_argument("--gpus", action="store_true", help="print the GPU constants and exit")
    return p.parse_args(argv)


def run_cuda(args, listing: list[str]) -> list[dict]:
    from static import cuda_report

    kernels = cuda_report.load_kernels()
    out = []
    for case in cases.iter_cases(args.shape, args.dtype, args.layout, args.direction):
        out += cuda_report.op_records(kernels, case, args.gpu)
    if args.list_loops:
        listing += cuda_report.loop_listing(kernels, args)
    return out


def run_triton(args, listing: list[str]) -> list[dict]:
    from static import triton_report

    triton_report.check_plans()
    out = []
    for case in cases.iter_cases(args.shape, args.dtype, args.layout, args.direction):
        out += triton_report.op_records(case, args.gpu)
    if args.list_loops:
        listing += triton_report.loop_listing()
    return out


def _skip_reason(backend: str, err: Exception) -> str | None:
    """Why a backend's rows are missing, for the errors that mean 'cannot run here'."""
    from static.cuda_report import Skip

    if isinstance(err, (Skip, ToolMissing)):
        return str(err)
    if backend == "triton" and isinstance(err, ImportError):
        return f"triton is not importable: {err}"
    return None


def format_table(records: list[dict]) -> str:
    head = (
        f"{'backend':7s} {'dir':8s} {'dtype':8s} {'layout':13s} {'shp':3s} {'gpu':4s} "
        f"{'regs':>4s} {'spill':>5s} {'occ':>4s} {'instr/out':>9s} {'launch':>6s} "
        f"{'ws MB':>7s} {'mem us':>8s} {'issue us':>8s} {'est us':>8s} {'roof us':>8s} "
        f"{'roof/est':>8s}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        lines.append(
            f"{r['backend']:7s} {r['direction']:8s} {r['dtype']:8s} {r['layout']:13s} "
            f"{r['shape']:3s} {r['gpu']:4s} {r['regs']:4d} {r['spill_bytes']:5d} "
            f"{r['occupancy']:4.2f} {r['instr_per_output']:9.1f} {r['launches']:6d} "
            f"{r['workspace_bytes'] / 1e6:7.2f} {r['memory_us']:8.1f} {r['issue_us']:8.1f} "
            f"{r['est_us']:8.1f} {r['roofline_us']:8.1f} {r['roofline_us'] / r['est_us']:8.0%}"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.gpus:
        print(gpu_table())
        return []
    if _INTERPRET_WAS not in (None, "", "0"):
        print(f"note: TRITON_INTERPRET={_INTERPRET_WAS} ignored (kernels are compiled here)")
    records, skipped, listing = [], [], []
    runners = {"cuda": run_cuda, "triton": run_triton}
    for backend in args.backend:
        try:
            records += runners[backend](args, listing)
        except Exception as err:  # noqa: BLE001  (skips are reported; anything else re-raised)
            reason = _skip_reason(backend, err)
            if reason is None:
                raise
            skipped.append(f"{backend} rows missing: {reason}")
    print("STATIC ESTIMATES (no GPU ran anything): SASS instruction counts, sector-exact bytes")
    print("and peak rates give est_us = max(memory_us, issue_us); see --help for the method.")
    print(format_table(records))
    for line in listing:
        print(line)
    for line in skipped:
        print(f"SKIPPED: {line}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
        print(f"wrote {len(records)} records to {args.json}")
    return records


if __name__ == "__main__":
    main()
