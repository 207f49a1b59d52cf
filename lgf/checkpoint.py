"""Checkpoints: atomic writes, `torch.load(weights_only=True)` reads, RNG state capture/restore.

A checkpoint is a dict of tensors and primitive containers only (no pickled classes), so it
loads with weights_only=True. It is written to a temporary file in the target directory,
flushed and fsync'ed, then moved over the target with os.replace: a process killed at any moment
leaves either the old checkpoint or the new one, never a partial file.
"""

import os
import random
import tempfile

import numpy as np
import torch

FORMAT_VERSION = 1
TMP_PREFIX = ".lgf-ckpt-"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path):
    """torch.save(obj) to `path` atomically (temp file in the same dir + fsync + os.replace)."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=TMP_PREFIX + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def atomic_copy(src, dst):
    """Makes `dst` hold the bytes of `src` atomically: a hard link (no copy) when the filesystem
    allows it, else a copy; either way through a temp name and os.replace. Later replacing `src`
    (os.replace makes a new file) leaves `dst` untouched."""
    import shutil

    directory = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(
        prefix=TMP_PREFIX + os.path.basename(dst) + ".", suffix=".tmp", dir=directory
    )
    os.close(fd)
    os.remove(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def remove_stale_temp_files(directory):
    """Deletes temp files that a killed writer left behind. Returns their names."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        if name.startswith(TMP_PREFIX) and name.endswith(".tmp"):
            try:
                os.remove(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def load_checkpoint(path, map_location="cpu"):
    """Loads a checkpoint with weights_only=True; clear errors for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path!r}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path!r}: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "args" not in ckpt:
        raise CheckpointError(
            f"{path!r} is not an LGF training checkpoint (no 'model'/'args' entries)"
        )
    return ckpt


def primitive_args(args) -> dict:
    """argparse.Namespace or dict -> dict holding only str/int/float/bool/None and lists of them."""
    items = vars(args).items() if not isinstance(args, dict) else args.items()
    out = {}
    for k, v in items:
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)) and all(
            isinstance(x, (str, int, float, bool)) or x is None for x in v
        ):
            out[k] = list(v)
    return out


def capture_rng_state() -> dict:
    """RNG states of python, numpy, torch CPU and (if present) every CUDA device, as tensors/lists."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict):
    """Inverse of capture_rng_state (CUDA states are restored for the devices that exist)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["name"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        for i in range(n):
            torch.cuda.set_rng_state(cuda[i].cpu(), i)
