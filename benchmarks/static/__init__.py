"""The static GPU-speed report (benchmarks/gpu_static.py), piece by piece.

sass.py, cfg.py, counting.py   SASS listings, their control flow, steady-state instruction counts
cuobjdump.py                   running cuobjdump (-res-usage, -sass) on binaries and cubins
triton_capture.py              capturing a Triton launcher's launches and compiling them per target
aten_ops.py, host_ops.py       counting the ATen ops beside the kernels (launches, bytes)
traffic.py                     sector-exact bytes of tiles and programs
plan_api.py                    what a kernel plan says; cuda_plans.py, triton_plans.py the plans
gpus.py, cases.py              GPU constants, occupancy; the shapes, dtypes and layouts covered
estimate.py                    per-kernel and per-op numbers of a record
cuda_report.py, triton_report.py  the records of each backend
"""
