"""Which GPUs the compiled CUDA kernels can run on (docs/design.md §3).

The build records the code its fatbinary holds (lgf_ops/_build_info.json, key "cuda_targets"):
"sm_XY" is machine code for compute capability X.Y, which also runs on later minor versions of
the same major (sm_80 on 8.6 and 8.9, not on 9.0); "sm_XYa" runs on X.Y only; "sm_XYf" on X.Y
and later minors of X; "compute_XY" is PTX that the driver compiles for any GPU of X.Y or later.
"""

import re

_TARGET = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")


def parse_target(target: str) -> tuple[str, tuple[int, int], str]:
    """ "sm_90a" -> ("sm", (9, 0), "a")."""
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"not a CUDA target name (sm_XY or compute_XY): {target!r}")
    kind, major, minor, suffix = match.groups()
    return kind, (int(major), int(minor)), suffix


def target_runs_on(target: str, capability: tuple[int, int]) -> bool:
    """Whether code compiled for `target` can run on a GPU of compute capability `capability`."""
    kind, arch, suffix = parse_target(target)
    if suffix == "a":
        return capability == arch
    if kind == "sm" or suffix == "f":
        return capability[0] == arch[0] and capability[1] >= arch[1]
    return capability >= arch


def targets_cover(targets: list[str], capability: tuple[int, int]) -> bool:
    return any(target_runs_on(t, capability) for t in targets)


def coverage_gap(targets: list[str] | None, capability: tuple[int, int]) -> str:
    """Why the CUDA kernels cannot run on a GPU of `capability` ("" when they can). Unknown
    targets (an extension built before they were recorded) count as covering every GPU."""
    if targets is None or targets_cover(targets, capability):
        return ""
    cc = f"{capability[0]}.{capability[1]}"
    return (
        f"the CUDA kernels were compiled for {', '.join(targets) or 'no GPU'}, none of which runs "
        f"on this GPU (compute capability {cc}); rebuild with TORCH_CUDA_ARCH_LIST including {cc}"
    )
