"""python -m lgf_ops [--device DEVICE] [--no-test]: what this install was built with, then every
backend on the device against the reference; exit status 1 when a check fails."""

import argparse
import json
import sys

import torch

from . import build_info, resolve_backend
from .self_test import run_self_test


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lgf_ops", description=__doc__)
    parser.add_argument(
        "--device", default=None, help="device to test (default: cuda when available, else cpu)"
    )
    parser.add_argument("--no-test", action="store_true", help="print the build info only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(build_info(), indent=1))
    if args.no_test:
        return 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    print(f"\nself-test on {device}: backend='auto' runs {resolve_backend('auto', device)!r}")
    results = run_self_test(device)
    for result in results:
        print(result.line())
    failed = sum(not r.passed for r in results)
    if not results:
        print("no fused backend runs on this device: only the reference is available")
        return 1
    print(f"{len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
