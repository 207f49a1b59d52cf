"""benchmarks/bench_trainer.py end to end against a stand-in for torchvision's reference trainer
(a tiny train.py with its command-line interface): the harness, not the numbers."""

import json
import os
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(__file__), "..")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

STAND_IN = """
import argparse

import torch
import torchvision


def get_args_parser():
    p = argparse.ArgumentParser()
    for flag in ("--data-path", "--model", "--device", "--opt", "--output-dir",
                 "--data-augmentation"):
        p.add_argument(flag)
    for flag in ("-b", "-j", "--epochs", "--aspect-ratio-group-factor"):
        p.add_argument(flag, type=int)
    for flag in ("--lr", "--momentum", "--wd"):
        p.add_argument(flag, type=float)
    p.add_argument("--use-v2", action="store_true")
    return p


def evaluate(*args, **kwargs):
    raise AssertionError("the harness must not evaluate")


def main(args):
    model = torchvision.models.get_model(args.model, weights=None, weights_backbone=None,
                                         num_classes=91)
    assert model.head.classification_head.num_classes < 91  # the harness set ours
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    model.train()
    for _ in range(100):
        images = [torch.rand(3, 50, 64) for _ in range(args.b)]
        targets = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])}
                   for _ in images]
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
"""


def test_bench_trainer_with_a_stand_in_reference(tmp_path, monkeypatch):
    import bench_trainer

    scratch = tmp_path / "scratch"  # where the benchmark's temp folder goes
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    from lgf.data import generate_synthetic_coco

    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "train.py").write_text(STAND_IN)
    (refs / "engine.py").write_text("def evaluate(*a, **k):\n    raise AssertionError\n")
    syn = generate_synthetic_coco(str(tmp_path / "syn"), num_train=10, num_val=2, image_size=64)
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split in ("train", "val"):
        os.symlink(syn[f"{split}_img"], coco / f"{split}2017")
        os.symlink(syn[f"{split}_ann"], coco / "annotations" / f"instances_{split}2017.json")
    out = tmp_path / "bench.json"
    result = bench_trainer.main(
        ["--tv-references", str(refs), "--data-path", str(coco), "--img-size", "64",
         "--steps", "4", "--warmup", "1", "--rounds", "1", "-j", "0", "--threads", "1",
         "--json", str(out)]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["ratio_ours_over_reference"] == result["ratio_ours_over_reference"] > 0
    assert saved["num_classes"] == 4  # synthetic category ids 1..3, plus the background
    for trainer in ("ours", "reference"):
        (run,) = saved["times_s"][trainer]
        assert len(run) == 3 and all(t > 0 for t, _ in run)  # steps 2..4 after one warm-up
        assert all(shape.startswith("2x3x") for _, shape in run)
    assert saved["per_shape"] and set(saved["weighted_median_s"]) == {"ours", "reference"}
    assert not any(scratch.iterdir()), "the runs' checkpoints were left behind"
