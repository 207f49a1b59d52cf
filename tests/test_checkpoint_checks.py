"""Checkpoint verification (issue 19): content checksum, format version, settings, non-finite
weights, and weights that do not fit the settings; each refused with a message naming the file."""

import random

import pytest
import torch

from lgf.modes import build_model, model_from_checkpoint
from lgf.training.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    content_digest,
    load_checkpoint,
    save_checkpoint,
)
from lgf.utils.state_dicts import WeightsMismatchError

MARK = 1234.5  # a float whose bytes are easy to find in the file


def _ckpt(**extra):
    ckpt = {
        "model": {
            "conv.weight": torch.full((64,), MARK),
            "bn.num_batches_tracked": torch.tensor(3),
        },
        "ema": {"module": {"conv.weight": torch.full((64,), MARK)}, "updates": 2},
        "args": {"mode": "lgf", "lr": 0.001, "lr_steps": [8, 11], "img_size": None},
        "optimizer": {"state": {0: {"step": torch.tensor(2.0)}}, "param_groups": [{"lr": 1e-3}]},
        "step": 2,
    }
    ckpt.update(extra)
    return ckpt


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_round_trip_stamps_version_and_checksum(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_ckpt(), path)
    ckpt = load_checkpoint(path)
    assert ckpt["format_version"] == FORMAT_VERSION == 2
    assert ckpt["checksum"]["digest"] == content_digest(ckpt)
    assert _same(
        {k: v for k, v in ckpt.items() if k not in ("checksum", "format_version")}, _ckpt()
    )


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(_ckpt(), path)
    data = bytearray(path.read_bytes())
    pos = data.find(torch.tensor([MARK]).numpy().tobytes())
    assert pos > 0
    data[pos + 1] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"last\.pt.*corrupt.*does not match the checksum"):
        load_checkpoint(path)


def test_no_flipped_byte_loads_as_different_content(tmp_path):
    """Anywhere in the file: a flip is refused, or it hit bytes that carry no content."""
    path = tmp_path / "last.pt"
    save_checkpoint(_ckpt(), path)
    original = path.read_bytes()
    reference = load_checkpoint(path)
    rng = random.Random(0)
    refused = 0
    for _ in range(120):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError:
            refused += 1
            continue
        assert _same(loaded, reference)
    assert refused > 60  # most bytes of a checkpoint are content (without the checksum: loaded)


def test_newer_or_unknown_format_versions_are_refused(tmp_path):
    path = tmp_path / "v99.pt"
    torch.save(_ckpt(format_version=99), path)
    with pytest.raises(CheckpointError, match=r"v99\.pt.*format 99, newer than the 2"):
        load_checkpoint(path)
    torch.save(_ckpt(format_version="2"), path)
    with pytest.raises(CheckpointError, match="unknown checkpoint format_version '2'"):
        load_checkpoint(path)
    torch.save(_ckpt(format_version=2), path)  # version 2 without its checksum
    with pytest.raises(CheckpointError, match="checksum entry is missing"):
        load_checkpoint(path)


def test_format_1_loads_unverified_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    torch.save(_ckpt(format_version=1), path)
    with pytest.warns(UserWarning, match=r"old\.pt.*format-1.*unverified"):
        assert load_checkpoint(path)["step"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["mode", "lgf"], "'args' must be a dict of settings by name, got list"),
        ("lgf", "'args' must be a dict of settings by name, got str"),
        ({"lr": "fast"}, r"setting 'lr' in 'args' is 'fast' \(str\)"),
        ({"num_classes": 4.5}, r"setting 'num_classes' in 'args' is 4.5"),
        ({"epochs": True}, r"setting 'epochs' in 'args' is True"),
        ({"anchor_sizes": [16, "32"]}, r"setting 'anchor_sizes'"),
    ],
)
def test_malformed_args_are_refused_by_setting(tmp_path, args, message):
    path = tmp_path / "bad_args.pt"
    save_checkpoint(_ckpt(args=args), path)  # a valid checksum: the content itself is wrong
    with pytest.raises(CheckpointError, match=r"bad_args\.pt.*" + message):
        load_checkpoint(path)


@pytest.mark.parametrize("where", ["model", "ema"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_tensor_name(tmp_path, where, bad):
    ckpt = _ckpt()
    state = ckpt["model"] if where == "model" else ckpt["ema"]["module"]
    state["conv.weight"][5] = bad
    path = tmp_path / "nan.pt"
    save_checkpoint(ckpt, path)
    with pytest.raises(
        CheckpointError, match=rf"nan\.pt.*{where} tensor 'conv.weight' holds 1 NaN"
    ):
        load_checkpoint(path)


def test_weights_of_another_class_count_are_named(tmp_path):
    args = {"mode": "baseline", "backbone": "resnet18", "num_classes": 4, "img_size": 64}
    model = build_model(args, weights_backbone=None)
    path = tmp_path / "four.pt"
    save_checkpoint({"model": model.state_dict(), "args": dict(args, num_classes=5)}, path)
    ckpt = load_checkpoint(path)
    with pytest.raises(WeightsMismatchError) as err:
        model_from_checkpoint(ckpt, source=repr(str(path)))
    msg = str(err.value)
    assert "four.pt" in msg and "cls_logits.weight" in msg
    assert "for 4 classes (num_classes) but the model was built for 5" in msg
    assert isinstance(err.value, ValueError)
