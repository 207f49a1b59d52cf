"""The area-range protocols of the evaluation and the names of their metrics (docs/design.md §5).

A protocol is the set of object-size buckets pycocotools scores separately (its
`params.areaRng` / `params.areaRngLbl`, areas in pixels of the original image) and its
detection caps (`params.maxDets`). Every metric name of the package comes from here:

- `coco`: COCO's small (< 32^2), medium (32^2-96^2) and large (> 96^2) objects, at most
  1 / 10 / 100 detections per image: AP, AP50, AP75, AP_small, AP_medium, AP_large, AR1, AR10,
  AR100, AR_small, AR_medium, AR_large (the order of COCOeval.stats).
- `tiny`: the buckets of the AI-TOD benchmark's evaluation code (cocoapi-aitod): very tiny
  (< 8^2), tiny (8^2-16^2), small (16^2-32^2) and medium (> 32^2, open above, as there),
  at most 1 / 100 / 1500 detections per image: AP, AP50, AP75, AP_vt, AP_t, AP_s, AP_m, AR1,
  AR100, AR1500, AR_vt, AR_t, AR_s, AR_m.

AP, AP50, AP75 and the per-bucket numbers are taken at the largest detection cap. As in
pycocotools, a box whose area is exactly on an edge counts in both buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..utils.setting_errors import SettingError

__all__ = [
    "AreaRange",
    "AreaProtocol",
    "AREA_RANGES",
    "ALL_AREA",
    "ALL_METRIC_NAMES",
    "area_protocol",
    "check_metric",
]

# pycocotools' "all" bucket and the upper end of its open buckets
_OPEN = 1e5**2


@dataclass(frozen=True)
class AreaRange:
    """One size bucket: pycocotools' label, the suffix of its metric names, [lo, hi] in px^2."""

    label: str
    suffix: str
    lo: float
    hi: float


ALL_AREA = AreaRange("all", "", 0.0, _OPEN)


@dataclass(frozen=True)
class AreaProtocol:
    """A named set of size buckets and detection caps, and the metric names it gives."""

    name: str
    ranges: tuple[AreaRange, ...]  # the buckets after pycocotools' "all"
    max_dets: tuple[int, int, int]

    @property
    def area_rng(self) -> list[list[float]]:
        """pycocotools' params.areaRng ("all" first)."""
        return [[r.lo, r.hi] for r in (ALL_AREA, *self.ranges)]

    @property
    def area_rng_lbl(self) -> list[str]:
        """pycocotools' params.areaRngLbl ("all" first)."""
        return [r.label for r in (ALL_AREA, *self.ranges)]

    @property
    def ap_names(self) -> tuple[str, ...]:
        """AP per bucket, smallest first (AP_small ... or AP_vt ...)."""
        return tuple(f"AP_{r.suffix}" for r in self.ranges)

    @property
    def ar_names(self) -> tuple[str, ...]:
        return tuple(f"AR_{r.suffix}" for r in self.ranges)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every summary metric, in the order of pycocotools' (or AI-TOD's) summary."""
        recalls = tuple(f"AR{m}" for m in self.max_dets)
        return ("AP", "AP50", "AP75", *self.ap_names, *recalls, *self.ar_names)

    @property
    def headline_names(self) -> tuple[str, ...]:
        """What a one-line report shows: AP, AP50, AP75, AP per bucket, AR at the largest cap."""
        return ("AP", "AP50", "AP75", *self.ap_names, f"AR{self.max_dets[-1]}")


COCO_AREAS = AreaProtocol(
    "coco",
    (
        AreaRange("small", "small", 0.0, 32.0**2),
        AreaRange("medium", "medium", 32.0**2, 96.0**2),
        AreaRange("large", "large", 96.0**2, _OPEN),
    ),
    (1, 10, 100),
)
TINY_AREAS = AreaProtocol(
    "tiny",
    (
        AreaRange("verytiny", "vt", 0.0, 8.0**2),
        AreaRange("tiny", "t", 8.0**2, 16.0**2),
        AreaRange("small", "s", 16.0**2, 32.0**2),
        AreaRange("medium", "m", 32.0**2, _OPEN),
    ),
    (1, 100, 1500),
)

AREA_RANGES = {p.name: p for p in (COCO_AREAS, TINY_AREAS)}

# every metric any protocol gives, without repeats (the choices of the trainer's --best-metric)
ALL_METRIC_NAMES = tuple(dict.fromkeys(n for p in AREA_RANGES.values() for n in p.metric_names))


def area_protocol(name: str) -> AreaProtocol:
    """The protocol called `name` ("coco" or "tiny"); an error names the setting area_ranges."""
    if name not in AREA_RANGES:
        raise SettingError(
            lambda n: f"{n('area_ranges')} must be one of {tuple(AREA_RANGES)}, got {name!r}"
        )
    return AREA_RANGES[name]


def check_metric(metric: str, area_ranges: str, setting: str = "best_metric") -> None:
    """Refuses a metric name that the protocol `area_ranges` does not compute."""
    names = area_protocol(area_ranges).metric_names
    if metric not in names:
        raise SettingError(
            lambda n: (
                f"{n(setting)} {metric!r} is not computed with {n('area_ranges')} "
                f"{area_ranges}; choose one of {names}"
            )
        )
