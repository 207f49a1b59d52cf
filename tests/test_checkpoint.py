"""Checkpoints (atomic writes, weights_only loads, RNG state, kill + resume), EMA, LR schedule and
the COCO metric code."""

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from run_args import synthetic_run

from lgf.data import generate_synthetic_coco, load_coco_annotations
from lgf.evaluation import METRIC_NAMES, coco_metrics, predictions_to_coco
from lgf.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    primitive_args,
    save_checkpoint,
)
from lgf.training.ema import ModelEMA
from lgf.training.lr_schedule import lr_factor
from lgf.training.rng import capture_rng_state, restore_rng_state
from lgf.utils.atomic_write import atomic_copy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ckpt(v):
    return {"model": {"w": torch.full((3,), float(v))}, "args": {"mode": "lgf"}, "step": v}


def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    save_checkpoint(_ckpt(1), path)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        f.write(b"partial bytes of a checkpoint")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(_ckpt(2), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert os.listdir(tmp_path) == ["last.pt"]  # no temp file left behind
    old = load_checkpoint(path)
    assert old["step"] == 1 and old["model"]["w"].tolist() == [1.0, 1.0, 1.0]
    save_checkpoint(_ckpt(3), path)
    assert load_checkpoint(path)["step"] == 3


def test_best_copy_survives_later_last_writes(tmp_path):
    last, best = str(tmp_path / "last.pt"), str(tmp_path / "best.pt")
    save_checkpoint(_ckpt(1), last)
    atomic_copy(last, best)
    save_checkpoint(_ckpt(2), last)
    assert load_checkpoint(best)["step"] == 1 and load_checkpoint(last)["step"] == 2
    atomic_copy(last, best)
    assert load_checkpoint(best)["step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        load_checkpoint(str(tmp_path / "nothere.pt"))
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_checkpoint(str(bad))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, str(other))
    with pytest.raises(CheckpointError, match="not an LGF training checkpoint"):
        load_checkpoint(str(other))


def test_rng_state_roundtrip_through_weights_only_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    state = capture_rng_state()
    expected = (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist())
    path = str(tmp_path / "rng.pt")
    save_checkpoint({"model": {}, "args": {}, "rng": [state]}, path)
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng_state(load_checkpoint(path)["rng"][0])
    assert (random.random(), np.random.normal(size=3).tolist(), torch.rand(3).tolist()) == expected


def test_primitive_args():
    import argparse

    ns = argparse.Namespace(a=1, b="x", c=[1, 2], d=None, e=object(), f=(0.5, True))
    assert primitive_args(ns) == {"a": 1, "b": "x", "c": [1, 2], "d": None, "f": [0.5, True]}


def test_ema_ramp_and_average():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9, ramp=1.0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    d1 = 0.9 * (1 - np.exp(-1.0))
    assert ema.current_decay() == pytest.approx(d1)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1 - d1))
    ema.update(model)
    d2 = 0.9 * (1 - np.exp(-2.0))
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 1 - d1 * d2))
    state = ema.state_dict()
    other = ModelEMA(model, decay=0.9, ramp=1.0)
    other.load_state_dict(state)
    assert other.updates == 2
    torch.testing.assert_close(other.module.weight, ema.module.weight)


def test_lr_schedules():
    assert lr_factor(0, 100, "cosine", warmup_steps=10, warmup_factor=0.1) == pytest.approx(0.1)
    assert lr_factor(5, 100, "cosine", warmup_steps=10, warmup_factor=0.1) == pytest.approx(
        0.55 * 1.0
    )
    assert lr_factor(10, 100, "cosine", warmup_steps=10) == pytest.approx(1.0)
    assert lr_factor(100, 100, "cosine", warmup_steps=10, min_ratio=0.05) == pytest.approx(0.05)
    assert lr_factor(55, 100, "cosine", warmup_steps=10, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(39, 100, "step", milestones=(40, 80)) == 1.0
    assert lr_factor(40, 100, "step", milestones=(40, 80), gamma=0.1) == pytest.approx(0.1)
    assert lr_factor(99, 100, "step", milestones=(40, 80), gamma=0.1) == pytest.approx(0.01)
    assert lr_factor(70, 100, "constant") == 1.0
    with pytest.raises(ValueError, match="unknown lr schedule"):
        lr_factor(0, 10, "linear")


# ---- COCO metrics -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("synval")
    paths = generate_synthetic_coco(str(root), num_train=1, num_val=12, image_size=96, seed=4)
    return load_coco_annotations(paths["val_ann"])


def _gt_as_results(coco, image_ids):
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in coco.anns.values()
        if a["image_id"] in image_ids
    ]


def test_coco_metrics_perfect_partial_and_empty(synthetic_val):
    coco = synthetic_val
    ids = sorted(coco.getImgIds())
    m = coco_metrics(coco, _gt_as_results(coco, set(ids)))
    assert set(METRIC_NAMES) <= set(m)
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0)
    assert m["AP_small"] == pytest.approx(1.0) and m["AR100"] == pytest.approx(1.0)
    assert set(m["per_class_AP"]) == {"disc", "square", "triangle"}
    assert all(v == pytest.approx(1.0) for v in m["per_class_AP"].values())
    # detections on half of the images only: the others count as misses
    half = _gt_as_results(coco, set(ids[: len(ids) // 2]))
    mh = coco_metrics(coco, half)
    assert 0.0 < mh["AR100"] < 1.0 and 0.0 < mh["AP"] < 1.0
    # scoring only the images that have detections gives the perfect score again
    scored = sorted({r["image_id"] for r in half})
    assert coco_metrics(coco, half, image_ids=scored)["AP"] == pytest.approx(1.0)
    # an empty result list (pycocotools' loadRes cannot take it): pycocotools' numbers, 0 where
    # the ground truth has boxes of that kind and -1 where it has none, as for the perfect run
    me = coco_metrics(coco, [])
    assert me["num_detections"] == 0
    assert all(me[k] == (-1.0 if m[k] == -1.0 else 0.0) for k in METRIC_NAMES), me
    assert all(v == 0.0 for v in me["per_class_AP"].values())


def test_coco_metrics_empty_results_keep_minus_one_for_absent_sizes(tmp_path):
    """A ground truth with only small boxes: no detections give AP_small 0 but AP_large -1."""
    from pycocotools.coco import COCO

    gt = {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 8, 8],
                "area": 64,
                "iscrowd": 0,
            }
        ],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
    me = coco_metrics(coco, [])
    assert me["AP"] == 0.0 and me["AP_small"] == 0.0 and me["AR_small"] == 0.0
    assert me["AP_medium"] == -1.0 and me["AP_large"] == -1.0 and me["AR_large"] == -1.0
    hit = coco_metrics(
        coco, [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 8, 8], "score": 0.9}]
    )
    assert hit["AP_small"] == pytest.approx(1.0) and hit["AP_large"] == -1.0


def test_predictions_to_coco_maps_boxes_and_labels():
    out = [
        {
            "boxes": torch.tensor([[1.0, 2.0, 11.0, 7.0]]),
            "scores": torch.tensor([0.9]),
            "labels": torch.tensor([2]),
        },
        {
            "boxes": torch.zeros((0, 4)),
            "scores": torch.zeros(0),
            "labels": torch.zeros(0, dtype=torch.int64),
        },
    ]
    res = predictions_to_coco(out, [42, 43], [0, 5, 9])
    assert res == [{"image_id": 42, "category_id": 9, "bbox": [1.0, 2.0, 10.0, 5.0], "score": 0.9}]


# ---- a run killed with SIGKILL resumes --------------------------------------------------------


def test_sigkill_mid_run_then_resume(tmp_path):
    from train.train import parse_args, run

    out = tmp_path / "run"
    data = tmp_path / "data"
    options = ["--mode", "lgf", "--epochs", 40, "--iters-per-epoch", 1, "--eval-every", 0]
    args = synthetic_run(data, out, *options, "--threads", 1, train=6)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.train"] + args,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    last = out / "last.pt"
    try:
        deadline = time.time() + 150
        while not last.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.time() < deadline, "no checkpoint was written in time"
            time.sleep(0.05)
        first = os.stat(last).st_mtime_ns
        while (
            os.stat(last).st_mtime_ns == first and time.time() < deadline
        ):  # a second write is on its way
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.02)
        time.sleep(0.15)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(str(last), map_location="cpu", weights_only=True)  # never a partial file
    done = ckpt["step"]
    assert done >= 1 and ckpt["epoch"] == done
    run(parse_args(args + ["--resume", "auto", "--max-iters", str(done + 2)]))
    final = load_checkpoint(str(last))
    assert final["step"] == done + 2 and final["epoch"] == done + 2
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]  # stale temp files cleaned up
    with open(out / "log.jsonl") as f:
        records = [json.loads(line) for line in f]
    # the log holds each step once: records of work lost to the kill were dropped on resume
    assert [r["step"] for r in records if r["type"] == "train"] == list(range(1, done + 3))
