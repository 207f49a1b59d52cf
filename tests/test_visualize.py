"""Tests of the detection / gate-map visualizer (lgf/experiments/visualize.py,
`python -m train.visualize`)."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from lgf.experiments.visualize import find_gate_block, load_model, predict_with_gates
from train import visualize as vis_cli
from train.train import parse_args, run


def _train(out, mode):
    args = parse_args(
        [
            "--mode",
            mode,
            "--backbone",
            "resnet18",
            "--synthetic-dir",
            os.path.join(os.path.dirname(out), "data"),
            "--synthetic-train",
            "2",
            "--synthetic-val",
            "1",
            "--synthetic-size",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--max-iters",
            "1",
            "--eval-every",
            "0",
            "--workers",
            "0",
            "--no-progress",
            "--output-dir",
            out,
        ]
    )
    run(args)
    return os.path.join(out, "last.pt"), os.path.join(
        os.path.dirname(out), "data", "val", "val_00000.png"
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("vis")
    lgf_ckpt, image = _train(str(root / "lgf"), "lgf")
    base_ckpt, _ = _train(str(root / "baseline"), "baseline")
    return {"lgf": lgf_ckpt, "baseline": base_ckpt, "image": image}


def _png_size(path):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return im.size


def test_lgf_checkpoint_gives_image_sized_gate_maps(checkpoints):
    model, names = load_model(checkpoints["lgf"])
    assert names == ["disc", "square", "triangle"]
    assert find_gate_block(model) is model.backbone.block
    # a non-square image: the maps must come back at the original size, not the padded input's
    image = torch.rand(3, 40, 72, generator=torch.Generator().manual_seed(0))
    out = predict_with_gates(model, image)
    s_l, s_g = out["gates"]
    assert s_l.shape == (40, 72) and s_g.shape == (40, 72)
    assert np.all((s_l > 0) & (s_l < 1)) and np.all((s_g > 0) & (s_g < 1))
    # the maps are the block's own gate_maps on the feature it receives in the forward pass
    feats = {}
    h = model.backbone.block.register_forward_pre_hook(lambda m, i: feats.__setitem__("x", i[0]))
    with torch.no_grad():
        model([image])
        ref_l, _ = model.backbone.block.gate_maps(feats["x"])
    h.remove()
    assert (
        float(s_l.min()) >= float(ref_l.min()) - 1e-6
        and float(s_l.max()) <= float(ref_l.max()) + 1e-6
    )


def test_baseline_has_no_gate_maps(checkpoints):
    model, _ = load_model(checkpoints["baseline"])
    assert find_gate_block(model) is None
    assert predict_with_gates(model, torch.rand(3, 32, 32))["gates"] is None


def test_cli_writes_pngs_for_lgf_and_baseline(checkpoints, tmp_path):
    out_lgf, out_base = tmp_path / "lgf", tmp_path / "base"
    assert (
        vis_cli.main(
            [
                "--checkpoint",
                checkpoints["lgf"],
                "--images",
                checkpoints["image"],
                checkpoints["image"],
                "--out",
                str(out_lgf),
                "--score-thresh",
                "0",
            ]
        )
        == 0
    )
    assert (
        vis_cli.main(
            [
                "--checkpoint",
                checkpoints["baseline"],
                "--images",
                checkpoints["image"],
                "--out",
                str(out_base),
                "--score-thresh",
                "0",
                "--layout",
                "row",
            ]
        )
        == 0
    )
    assert sorted(os.listdir(out_lgf)) == [
        "val_00000.json",
        "val_00000.png",
        "val_00000_2.json",
        "val_00000_2.png",
    ]
    w_lgf, _ = _png_size(out_lgf / "val_00000.png")
    w_base, _ = _png_size(out_base / "val_00000.png")
    assert w_lgf > 2 * w_base  # three panels side by side against one
    det = json.load(open(out_lgf / "val_00000.json"))
    assert (
        det["gate_maps"] is True
        and json.load(open(out_base / "val_00000.json"))["gate_maps"] is False
    )
    assert det["detections"], "score threshold 0 must keep the model's detections"
    assert all(
        d["score"] >= 0 and d["class"] in ("disc", "square", "triangle") and len(d["box_xyxy"]) == 4
        for d in det["detections"]
    )


def test_cli_takes_folders_and_globs(checkpoints, tmp_path, capsys):
    """A folder that exists is its images (it used to be "file not found"); a glob its matches."""
    folder = os.path.dirname(checkpoints["image"])
    out = tmp_path / "folder"
    argv = ["--checkpoint", checkpoints["baseline"], "--out", str(out), "--score-thresh", "0.5"]
    assert vis_cli.main(argv + ["--images", folder]) == 0
    expected = sorted(os.path.splitext(n)[0] + ".png" for n in os.listdir(folder))
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == expected
    assert capsys.readouterr().out.count(".png") == len(expected)
    out = tmp_path / "glob"
    argv = ["--checkpoint", checkpoints["baseline"], "--out", str(out), "--score-thresh", "0.5"]
    assert vis_cli.main(argv + ["--images", os.path.join(folder, "val_*.png")]) == 0
    assert sorted(os.listdir(out)) == ["val_00000.json", "val_00000.png"]


def test_cli_bad_input(checkpoints, tmp_path, capsys):
    assert (
        vis_cli.main(
            [
                "--checkpoint",
                str(tmp_path / "no.pt"),
                "--images",
                checkpoints["image"],
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err
    assert (
        vis_cli.main(
            [
                "--checkpoint",
                checkpoints["lgf"],
                "--images",
                str(tmp_path / "no.png"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "--images" in capsys.readouterr().err
