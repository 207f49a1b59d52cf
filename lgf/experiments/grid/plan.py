"""The runs of a grid: modes x datasets x insert levels x seeds, one `RunSpec` each.

Each run has its own directory `OUT/<dataset>/<mode>_<level>_seed<seed>`. A *group* is
(dataset, insert level, mode): its runs differ only by seed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...models import INSERT_LEVELS
from ...modes import MODES
from ...utils.setting_errors import SettingError

__all__ = ["RunSpec", "plan_runs", "group_order", "parse_list", "parse_axes"]


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    dataset: str
    insert_level: str
    mode: str
    seed: int

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.dataset, self.insert_level, self.mode)

    @property
    def name(self) -> str:
        return f"{self.mode}_{self.insert_level}_seed{self.seed}"

    def run_dir(self, out_root: str) -> str:
        return os.path.join(out_root, self.dataset, self.name)


def parse_list(text: str, what: str, convert: Callable[[str], Any] = str) -> list[Any]:
    """'a,b,c' -> [a, b, c] (stripped, duplicates removed, order kept); errors name the setting
    `what` (through lgf.utils.setting_errors, so a command line can show its flag)."""
    items = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = convert(part)
        except (TypeError, ValueError):
            raise SettingError(lambda n, part=part: f"{n(what)}: cannot read {part!r}") from None
        if value not in items:
            items.append(value)
    if not items:
        raise SettingError(lambda n: f"{n(what)}: empty list")
    return items


def plan_runs(
    modes: Iterable[str], datasets: Iterable[str], levels: Iterable[str], seeds: Iterable[int]
) -> list[RunSpec]:
    """Every RunSpec, seed-major (all groups of seed 0 first, then seed 1, ...), so a grid stopped
    halfway already has one seed of every group; inside a seed: dataset, level, mode order."""
    modes, datasets, levels = list(modes), list(datasets), list(levels)
    return [
        RunSpec(d, lvl, m, int(s)) for s in seeds for d in datasets for lvl in levels for m in modes
    ]


def group_order(plan: Iterable[RunSpec]) -> list[tuple[str, str, str]]:
    """The groups of a plan in first-seen order (the row order of the tables)."""
    return list(dict.fromkeys(spec.group for spec in plan))


def _only_known(items: list[str], known, what: str) -> None:
    bad = [x for x in items if x not in known]
    if bad:
        raise SettingError(
            lambda n: f"{n(what)}: unknown {bad}; expected some of {tuple(sorted(known))}"
        )


def parse_axes(modes: str, levels: str, seeds: str) -> tuple[list[str], list[str], list[int]]:
    """The grid's axes from comma-separated text: trainer modes (lgf.modes.MODES), insert levels
    (case-insensitive) and integer seeds; errors name the setting (modes, levels, seeds)."""
    mode_list = parse_list(modes, "modes")
    _only_known(mode_list, MODES, "modes")
    level_list = parse_list(levels, "levels", str.upper)
    _only_known(level_list, INSERT_LEVELS, "levels")
    return mode_list, level_list, parse_list(seeds, "seeds", int)
