"""What the commands share: argparse value types, the help formatter, and the wording of library
errors with the commands' flags (library errors name settings, see lgf.utils.setting_errors)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from lgf.utils.setting_errors import Namer, worded


def command_name(module: str) -> str:
    """How the user ran the command: the console script's name (`lgf-train`) when run through
    one, else `python -m train.<module>`."""
    script = os.path.basename(sys.argv[0])
    return script if script.startswith("lgf-") else f"python -m train.{module}"


def flag(setting: str) -> str:
    """The flag of a setting: `train_img` -> `--train-img`."""
    return "--" + setting.replace("_", "-")


def flag_namer(renames: Mapping[str, str]) -> Namer:
    """A namer that shows settings as flags, with `renames` for those whose flag differs."""
    return lambda setting: renames.get(setting) or flag(setting)


def report_error(exc: BaseException, namer: Namer = flag) -> None:
    """Prints `error: <message>` on stderr, settings worded by `namer`."""
    print(f"error: {worded(exc, namer)}", file=sys.stderr, flush=True)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" except where the default is None or False (the help says what
    happens then)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS or action.default is False:
            return action.help
        return super()._get_help_string(action)


def positive_int(v: str) -> int:
    i = int(v)
    if i < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return i


def non_negative_int(v: str) -> int:
    i = int(v)
    if i < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return i


def non_negative_float(v: str) -> float:
    f = float(v)
    if not f >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return f


def positive_float(v: str) -> float:
    f = float(v)
    if not f > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {v}")
    return f
