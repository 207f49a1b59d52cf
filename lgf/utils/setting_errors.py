"""Errors about settings, worded so that each caller can name the settings its own way.

Library code names a bad argument by its own name (the parameter or config field, e.g.
`src_img`); a command line that took the value from a flag shows the flag (`--src-img`). So the
message is composed by a function of a *namer*: `str(err)` uses the setting names as they are,
`err.renamed(namer)` gives the same error worded with `namer(setting)`, e.g. a flag.

    raise SettingError(lambda n: f"{n('train_img')} and {n('train_ann')} go together")
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Namer", "NamesSettings", "SettingError", "MissingPathError", "worded"]

Namer = Callable[[str], str]


def _as_is(name: str) -> str:
    return name


class NamesSettings(Exception):
    """Base of the exceptions whose message names settings through a namer."""

    def __init__(self, compose: Callable[[Namer], str]):
        self.compose = compose
        super().__init__(compose(_as_is))

    def renamed(self, namer: Namer) -> NamesSettings:
        """The same kind of error, with every setting shown as `namer(setting)`."""
        return type(self)(lambda _: self.compose(namer))


class SettingError(NamesSettings, ValueError):
    """A setting has a bad value, or settings do not fit together."""


class MissingPathError(NamesSettings, FileNotFoundError):
    """A file or folder that a setting names does not exist."""


def worded(exc: BaseException, namer: Namer) -> str:
    """The message of `exc`, with settings shown as `namer(setting)` where it names any."""
    return str(exc.renamed(namer)) if isinstance(exc, NamesSettings) else str(exc)
