"""Atomic file writes: a reader sees the old file or the new one, never a partial one.

Every writer of the package (checkpoints, metric and run JSON, CSV tables, log rewrites, plots,
images of derived datasets) goes through `atomic_write`: the data is written to a temp file with
a unique name in the target's folder, flushed and fsync'ed, then renamed over the target
(`os.replace`, atomic on POSIX within one filesystem) and the folder is fsync'ed. On any failure
the temp file is removed and the target is left as it was. A process killed mid-write leaves a
temp file behind (named `TEMP_PREFIX...tmp`); `remove_stale_temp_files` deletes those.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    "TEMP_PREFIX",
    "atomic_write",
    "write_json",
    "write_text",
    "atomic_copy",
    "remove_stale_temp_files",
]

TEMP_PREFIX = ".lgf-tmp-"
TEMP_SUFFIX = ".tmp"


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable; some filesystems refuse to open or sync a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_path(path: str) -> str:
    """A new, empty temp file next to `path`, readable like a file open() would create."""
    fd, tmp = tempfile.mkstemp(
        prefix=TEMP_PREFIX + os.path.basename(path) + ".",
        suffix=TEMP_SUFFIX,
        dir=os.path.dirname(path),
    )
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() honours the umask
    return tmp


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """`with atomic_write(path) as f:` writes to a temp file that replaces `path` on success.

    mode: "w" (text, UTF-8 unless `encoding`) or "wb" (bytes). Parent folders are created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    tmp = _temp_path(path)
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


def write_json(obj: Any, path: str | os.PathLike, indent: int | None = 2) -> None:
    """Writes `obj` as JSON to `path` atomically."""
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Writes `text` to `path` atomically (UTF-8)."""
    with atomic_write(path) as f:
        f.write(text)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Makes `dst` hold the bytes of `src` atomically.

    A hard link when the filesystem allows it (no copy; replacing `src` later with a new file
    leaves `dst` untouched), else a copy; either way through a temp name and os.replace.
    """
    dst = os.path.abspath(os.fspath(dst))
    directory = os.path.dirname(dst)
    os.makedirs(directory, exist_ok=True)
    tmp = _temp_path(dst)
    os.remove(tmp)  # os.link needs the name free; mkstemp only reserved a unique one
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(directory)


def remove_stale_temp_files(directory: str | os.PathLike) -> list[str]:
    """Deletes the temp files that killed writers left in `directory`; returns their names."""
    directory = os.fspath(directory)
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        if name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX):
            try:
                os.remove(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed
