"""What the commands share: argparse value types, the help formatter (every default shown),
deprecated flag aliases, the progress flag, and the wording of library errors with the commands'
flags (library errors name settings, see lgf.utils.setting_errors)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
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


def shown_default(value: object) -> str:
    """A default as --help shows it: None -> none, False/True -> off/on, lists space-separated."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Ends every option's help with "(default: X)" (see `shown_default`), unless the help
    already says "default:" itself."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if "default:" in text or "%(default)" in text:
            return text
        default = shown_default(action.default).replace("%", "%%")
        return f"{text} (default: {default})"


class _DeprecatedAlias(argparse.Action):
    """An old flag that still works: stores like the new one and warns that it is deprecated."""

    def __init__(self, option_strings, dest, new_flag: str, **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        warnings.warn(
            f"{option_string} is deprecated and will be removed; use {self.new_flag}",
            FutureWarning,
            stacklevel=2,
        )
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def deprecated_alias(
    parser: argparse.ArgumentParser, old: str, new: str, dest: str | None = None, **kwargs
) -> None:
    """Adds `old` as a hidden flag that stores into `dest` (default: `new`'s) and warns, so
    scripts written for the old name still run."""
    dest = dest or new.lstrip("-").replace("-", "_")
    parser.add_argument(
        old, dest=dest, action=_DeprecatedAlias, new_flag=new, help=argparse.SUPPRESS, **kwargs
    )


def add_progress_flag(parser: argparse.ArgumentParser, what: str = "progress bars") -> None:
    """`--no-progress` (progress bars are on by default in every command)."""
    parser.add_argument("--no-progress", action="store_true", help=f"no {what}")


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
