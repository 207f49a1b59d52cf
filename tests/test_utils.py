"""lgf.utils: the atomic writer, setting errors worded per caller, and unwrap."""

import json
import os

import pytest
import torch
import torch.nn as nn

from lgf.utils.atomic_write import (
    TEMP_PREFIX,
    atomic_copy,
    atomic_write,
    remove_stale_temp_files,
    write_json,
    write_text,
)
from lgf.utils.setting_errors import MissingPathError, SettingError, worded
from lgf.utils.unwrap import unwrap


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_json({"v": 1}, path)
    assert json.loads(path.read_text()) == {"v": 1}
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write('{"v": 2, "partial')
            raise RuntimeError("boom")
    assert json.loads(path.read_text()) == {"v": 1}  # the old file, untouched
    assert os.listdir(path.parent) == ["a.json"]  # and no temp file left behind
    write_text("x\n", path)
    assert path.read_text() == "x\n"


def test_atomic_write_modes_and_permissions(tmp_path):
    with atomic_write(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(tmp_path / "b.bin").st_mode & 0o777 == 0o666 & ~mask
    with atomic_write(tmp_path / "c.csv", newline="") as f:
        f.write("a,b\r\n")
    assert (tmp_path / "c.csv").read_bytes() == b"a,b\r\n"
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "d", "a"):
            pass


def test_temp_names_are_unique_and_stale_ones_are_removed(tmp_path):
    seen = []
    with atomic_write(tmp_path / "a.txt") as f1, atomic_write(tmp_path / "a.txt") as f2:
        seen = [os.path.basename(f1.name), os.path.basename(f2.name)]
        f1.write("1")
        f2.write("2")
    assert seen[0] != seen[1] and all(n.startswith(TEMP_PREFIX + "a.txt.") for n in seen)
    assert (tmp_path / "a.txt").read_text() == "1"  # f1 closes last: the last to finish wins
    stale = tmp_path / f"{TEMP_PREFIX}last.pt.x1.tmp"
    stale.write_bytes(b"cut")
    (tmp_path / "keep.tmp").write_text("not ours")
    assert remove_stale_temp_files(tmp_path) == [stale.name]
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "keep.tmp"]


def test_atomic_copy_is_independent_of_later_source_writes(tmp_path):
    src, dst = tmp_path / "last.pt", tmp_path / "best.pt"
    write_text("one", src)
    atomic_copy(src, dst)
    write_text("two", src)
    assert dst.read_text() == "one" and src.read_text() == "two"


def test_setting_errors_word_settings_per_caller():
    err = SettingError(lambda n: f"{n('train_img')} and {n('train_ann')} go together")
    assert isinstance(err, ValueError)
    assert str(err) == "train_img and train_ann go together"
    flagged = err.renamed(lambda s: "--" + s.replace("_", "-"))
    assert type(flagged) is SettingError
    assert str(flagged) == "--train-img and --train-ann go together"
    missing = MissingPathError(lambda n: f"{n('src_img')}: not found")
    assert isinstance(missing, FileNotFoundError) and not isinstance(missing, ValueError)
    assert worded(missing, str.upper) == "SRC_IMG: not found"
    assert worded(KeyError("plain"), str.upper) == "'plain'"


def test_unwrap_strips_ddp_like_and_compile_wrappers():
    model = nn.Linear(2, 2)

    class Wrapper(nn.Module):  # how DistributedDataParallel / DataParallel hold the model
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert unwrap(model) is model
    assert unwrap(nn.DataParallel(model)) is model
    assert unwrap(Wrapper(Wrapper(model))) is model
    compiled = torch.compile(Wrapper(model))  # wraps lazily; nothing is compiled here
    assert unwrap(compiled) is model
