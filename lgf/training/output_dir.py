"""The output folder of a training run (docs/design.md §5).

`claim_output_dir` makes the folder ready for one trainer or says why it cannot:

- a path that is a file, or a folder that cannot be written, is refused by name;
- an advisory lock (`fcntl.flock` on LOCK_FILE, held until `OutputDirLock.release` or the end
  of the process) makes a second trainer in the same folder fail at once with a message;
- temp files that killed writers left (lgf.utils.atomic_write) are removed;
- a folder that holds another run (any of RUN_FILES / RUN_FOLDERS) is refused unless the run
  resumes it (`resume`) or replaces it (`overwrite`, which deletes those artefacts first), so two
  runs never mix their checkpoints, evaluations and logs.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from collections.abc import Callable

from ..utils.atomic_write import remove_stale_temp_files
from ..utils.setting_errors import SettingError
from .run_log import CSV_FILE, LOG_FILE, PLOT_FILE

__all__ = [
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT",
    "SUMMARY_FILE",
    "EVAL_DIR",
    "LOCK_FILE",
    "RUN_FILES",
    "RUN_FOLDERS",
    "OutputDirLock",
    "run_artefacts",
    "claim_output_dir",
]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
SUMMARY_FILE = "summary.json"
EVAL_DIR = "eval"
LOCK_FILE = ".lgf-train.lock"
RUN_FILES = (LAST_CHECKPOINT, BEST_CHECKPOINT, LOG_FILE, CSV_FILE, PLOT_FILE, SUMMARY_FILE)
RUN_FOLDERS = (EVAL_DIR,)

Say = Callable[[str], None]


class OutputDirLock:
    """The held lock of an output folder; `release()` lets the next trainer in."""

    def __init__(self, fd: int, path: str):
        self.fd, self.path = fd, path

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def run_artefacts(output_dir: str) -> list[str]:
    """Names of the trainer's artefacts present in `output_dir` (a non-empty folder counts)."""
    found = [n for n in RUN_FILES if os.path.isfile(os.path.join(output_dir, n))]
    for name in RUN_FOLDERS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and os.listdir(path):
            found.append(name + "/")
    return found


def _not_writable(output_dir: str, exc: OSError) -> SettingError:
    why = exc.strerror or str(exc)
    return SettingError(lambda n: f"{n('output_dir')} {output_dir!r} cannot be written: {why}")


def _make_folder(output_dir: str) -> None:
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise SettingError(
            lambda n: f"{n('output_dir')} {output_dir!r} is a file, not a folder; choose a folder"
        )
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise _not_writable(output_dir, exc) from None


def _lock(output_dir: str) -> OutputDirLock:
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _not_writable(output_dir, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise _not_writable(output_dir, exc) from None
        raise SettingError(
            lambda n: (
                f"{n('output_dir')} {output_dir!r} is in use by another training process (pid "
                f"{holder}, holding {LOCK_FILE}); wait for it to end or choose another "
                f"{n('output_dir')}"
            )
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:
        os.close(fd)
        raise _not_writable(output_dir, exc) from None
    return OutputDirLock(fd, path)


def _remove_artefacts(output_dir: str, names: list[str]) -> None:
    for name in names:
        path = os.path.join(output_dir, name.rstrip("/"))
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def _resumes_here(resume: str | None, output_dir: str) -> bool:
    if resume in (None, "", "auto"):
        return resume == "auto"
    folder = os.path.dirname(os.path.abspath(resume))
    return os.path.realpath(folder) == os.path.realpath(output_dir)


def _check_reuse(output_dir: str, found: list[str], resume: str | None, overwrite: bool) -> None:
    listed = ", ".join(found)
    here = _resumes_here(resume, output_dir)
    if overwrite and here:
        raise SettingError(
            lambda n: (
                f"{n('overwrite')} would delete the run in {output_dir!r} that {n('resume')} "
                "continues; give one of them"
            )
        )
    if overwrite or here:
        return
    if resume:
        raise SettingError(
            lambda n: (
                f"{n('output_dir')} {output_dir!r} holds another run ({listed}) and "
                f"{n('resume')} names a checkpoint elsewhere; replace that run with "
                f"{n('overwrite')} or choose another {n('output_dir')}"
            )
        )
    raise SettingError(
        lambda n: (
            f"{n('output_dir')} {output_dir!r} holds another run ({listed}); continue it with "
            f"{n('resume')} auto, replace it with {n('overwrite')}, or choose another "
            f"{n('output_dir')}"
        )
    )


def claim_output_dir(
    output_dir: str, resume: str | None, overwrite: bool, say: Say = print
) -> OutputDirLock:
    """Creates and locks `output_dir`, removes stale temp files, and refuses or clears a run it
    already holds (see the module docstring). Returns the held lock."""
    _make_folder(output_dir)
    lock = _lock(output_dir)
    try:
        for folder in ("",) + RUN_FOLDERS:
            for name in remove_stale_temp_files(os.path.join(output_dir, folder)):
                say(
                    f"removed a temp file left by an interrupted write: {folder}/{name}".lstrip("/")
                )
        found = run_artefacts(output_dir)
        if found:
            _check_reuse(output_dir, found, resume, overwrite)
        last = os.path.join(output_dir, LAST_CHECKPOINT)
        stale = resume == "auto" and not os.path.isfile(last)
        if found and (overwrite or stale):
            _remove_artefacts(output_dir, found)
            why = "overwrite" if overwrite else "no last.pt to resume"
            say(f"removed the artefacts of the earlier run ({why}): {', '.join(found)}")
    except BaseException:
        lock.release()
        raise
    return lock
