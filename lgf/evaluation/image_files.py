"""Image files named on a command line: files, folders and glob patterns -> a list of paths."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from ..utils.setting_errors import MissingPathError, SettingError

__all__ = ["IMAGE_EXTENSIONS", "expand_image_paths", "unique_stems"]

# what a folder is searched for (a file named on its own may have any extension)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

_GLOB_CHARS = ("*", "?", "[")


def _is_image(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(IMAGE_EXTENSIONS)


def _folder_images(folder: str, setting: str) -> list[str]:
    found = sorted(
        os.path.join(folder, n) for n in os.listdir(folder) if _is_image(os.path.join(folder, n))
    )
    if not found:
        raise MissingPathError(
            lambda n: (
                f"{n(setting)}: the folder {folder!r} holds no image file "
                f"({', '.join(IMAGE_EXTENSIONS)})"
            )
        )
    return found


def _one_spec(spec: str, setting: str) -> list[str]:
    if os.path.isdir(spec):
        return _folder_images(spec, setting)
    if os.path.isfile(spec):
        return [spec]
    if any(c in spec for c in _GLOB_CHARS):
        found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not found:
            raise MissingPathError(lambda n: f"{n(setting)}: the pattern {spec!r} matches no file")
        return found
    raise MissingPathError(lambda n: f"{n(setting)}: file or folder not found: {spec!r}")


def expand_image_paths(
    specs: str | os.PathLike | Sequence[str | os.PathLike],
    unique: bool = False,
    setting: str = "images",
) -> list[str]:
    """Files as given, folders as their image files (sorted, not recursive), glob patterns
    (`**` recursive) as the files they match (sorted), in the order of `specs`. unique: drop
    repeats of a file (by its real path), keeping the first. Errors name `setting`."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    if not specs:
        raise SettingError(lambda n: f"{n(setting)}: give at least one image, folder or pattern")
    paths = [p for spec in specs for p in _one_spec(os.fspath(spec), setting)]
    if unique:
        seen, kept = set(), []
        for p in paths:
            key = os.path.realpath(p)
            if key not in seen:
                seen.add(key)
                kept.append(p)
        paths = kept
    return paths


def unique_stems(paths: Sequence[str]) -> list[str]:
    """An output file stem per path: its own stem, with _2, _3, ... for repeated stems."""
    used, stems = set(), []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = stem, 1
        while name in used:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        stems.append(name)
    return stems
