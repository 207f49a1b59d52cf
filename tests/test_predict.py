"""Tests of prediction on image files: `lgf.predict` (lgf/evaluation/prediction.py),
lgf.evaluation.predict_checkpoint and `python -m train.predict`."""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

import lgf
from lgf.evaluation import coco_metrics, evaluate_checkpoint
from lgf.evaluation.image_files import expand_image_paths, unique_stems
from lgf.experiments.visualize import load_model
from lgf.utils.setting_errors import MissingPathError, SettingError
from train import predict as predict_cli
from train.train import parse_args, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-step checkpoint on the synthetic set (64 px images, categories 1..3)."""
    root = tmp_path_factory.mktemp("predict")
    argv = ["--mode", "lgf", "--backbone", "resnet18", "--synthetic-dir", str(root / "data")]
    argv += ["--synthetic-train", "2", "--synthetic-val", "5", "--synthetic-size", "64"]
    argv += ["--epochs", "1", "--batch-size", "2", "--max-iters", "1", "--eval-every", "0"]
    argv += ["--workers", "0", "--no-progress", "--score-thresh", "0"]
    run(parse_args(argv + ["--output-dir", str(root / "run")]))
    data = root / "data"
    return {
        "ckpt": str(root / "run" / "last.pt"),
        "val_dir": str(data / "val"),
        "val_ann": str(data / "val.json"),
    }


def _quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


def test_cli_on_a_folder_with_ann_writes_what_loadres_accepts(trained, tmp_path, capsys):
    out, drawn = tmp_path / "dets.json", tmp_path / "drawn"
    argv = ["--checkpoint", trained["ckpt"], "--images", trained["val_dir"], "--out", str(out)]
    argv += ["--ann", trained["val_ann"], "--draw", str(drawn)]
    assert predict_cli.main(argv + ["--batch-size", "2", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = json.loads(out.read_text())
    assert summary["num_images"] == 5 and summary["num_detections"] == len(records) > 0
    gt = _quiet_coco(trained["val_ann"])
    with contextlib.redirect_stdout(io.StringIO()):
        loaded = gt.loadRes(str(out))  # pycocotools accepts the file
    assert len(loaded.anns) == len(records)
    assert {r["image_id"] for r in records} <= set(gt.getImgIds())
    assert {r["category_id"] for r in records} <= set(gt.getCatIds())
    assert all(0.0 <= r["score"] <= 1.0 and len(r["bbox"]) == 4 for r in records)
    assert "file_name" not in records[0]  # ids come from the annotation file
    m = coco_metrics(gt, records)  # and it can be scored
    assert m["num_images"] == 5 and 0.0 <= m["AP"] <= 1.0
    # one drawing per image, at the image's size
    pngs = sorted(os.listdir(drawn))
    assert pngs == sorted(os.path.splitext(n)[0] + ".png" for n in os.listdir(trained["val_dir"]))
    for png in pngs:
        with (
            Image.open(drawn / png) as im,
            Image.open(os.path.join(trained["val_dir"], png)) as src,
        ):
            assert im.size == src.size and im.mode == "RGB"


def test_ids_come_from_the_annotation_file_by_name(trained, tmp_path):
    """The same detections as train.evaluate's detections file for the same images."""
    gt = _quiet_coco(trained["val_ann"])
    by_name = {im["file_name"]: im["id"] for im in gt.dataset["images"]}
    out = tmp_path / "dets.json"
    argv = ["--checkpoint", trained["ckpt"], "--images", os.path.join(trained["val_dir"], "*")]
    argv += ["--out", str(out), "--ann", trained["val_ann"], "--batch-size", "2", "--no-progress"]
    assert predict_cli.main(argv) == 0
    ours = json.loads(out.read_text())
    det = tmp_path / "eval_dets.json"
    evaluate_checkpoint(
        trained["ckpt"],
        trained["val_dir"],
        trained["val_ann"],
        batch_size=2,
        device="cpu",
        detections_json=str(det),
    )
    theirs = json.loads(det.read_text())
    key = lambda r: (r["image_id"], -r["score"], r["bbox"])  # noqa: E731
    assert sorted(ours, key=key) == sorted(theirs, key=key)
    assert set(by_name.values()) >= {r["image_id"] for r in ours}


def test_cli_without_ann_numbers_the_images_and_names_them(trained, tmp_path, capsys):
    files = sorted(os.listdir(trained["val_dir"]))
    one = os.path.join(trained["val_dir"], files[0])
    out = tmp_path / "dets.json"
    # a file, then the folder that holds it again: repeats are dropped, order kept
    argv = ["--checkpoint", trained["ckpt"], "--images", one, trained["val_dir"]]
    assert predict_cli.main(argv + ["--out", str(out), "--score-thresh", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 5
    records = json.loads(out.read_text())
    names = {r["image_id"]: r["file_name"] for r in records}
    expected = [one] + [os.path.join(trained["val_dir"], f) for f in files[1:]]
    assert all(names[i] == expected[i - 1] for i in names)
    assert set(names) <= set(range(1, 6)) and len(set(names)) > 1


def test_cli_bad_input_names_the_flag(trained, tmp_path, capsys):
    base = ["--checkpoint", trained["ckpt"], "--out", str(tmp_path / "o.json")]
    assert predict_cli.main(base + ["--images", str(tmp_path / "nope")]) == 2
    assert "--images: file or folder not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert predict_cli.main(base + ["--images", str(tmp_path / "empty")]) == 2
    assert "holds no image" in capsys.readouterr().err
    assert predict_cli.main(base + ["--images", str(tmp_path / "*.png")]) == 2
    assert "matches no file" in capsys.readouterr().err
    stray = tmp_path / "stray.png"
    shutil.copy(os.path.join(trained["val_dir"], os.listdir(trained["val_dir"])[0]), stray)
    argv = base + ["--images", str(stray), "--ann", trained["val_ann"]]
    assert predict_cli.main(argv) == 2
    assert "not listed in" in capsys.readouterr().err
    assert predict_cli.main(base + ["--images", trained["val_dir"], "--score-thresh", "2"]) == 2
    assert "--score-thresh must be in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_lgf_predict_on_tensors_thresholds_and_amp(trained):
    model, _ = load_model(trained["ckpt"])
    images = [
        torch.rand(3, 48, 72, generator=torch.Generator().manual_seed(0)),
        (torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8),
    ]
    model.score_thresh = 0.5  # the checkpoint's own threshold, here above every score
    assert lgf.predict(model, images) == []
    low = lgf.predict(model, images, score_thresh=0.0)
    assert model.score_thresh == 0.5  # lowered for the call only
    cut = sorted(r["score"] for r in low)[len(low) // 2]
    high = lgf.predict(model, images, score_thresh=cut, image_ids=[7, 9])
    assert 0 < len(high) < len(low) and all(r["score"] >= cut for r in high)
    assert {r["image_id"] for r in low} <= {1, 2} and {r["image_id"] for r in high} <= {7, 9}
    assert all("file_name" not in r and r["category_id"] in (1, 2, 3) for r in low)
    w, h = 72, 48
    assert all(r["bbox"][0] + r["bbox"][2] <= w + 0.01 for r in low if r["image_id"] == 1)
    assert all(r["bbox"][1] + r["bbox"][3] <= h + 0.01 for r in low if r["image_id"] == 1)
    with_amp = lgf.predict(model, images, amp=True, score_thresh=0.0)  # bf16 autocast on CPU
    assert with_amp and all(0.0 <= r["score"] <= 1.0 for r in with_amp)
    with pytest.raises(SettingError, match="image_ids"):
        lgf.predict(model, images, image_ids=[1])
    with pytest.raises(SettingError, match="batch_size"):
        lgf.predict(model, images, batch_size=0)


def test_image_paths_folders_globs_and_stems(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt", "sub/c.png"):
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    folder = expand_image_paths(str(tmp_path))
    assert [os.path.basename(p) for p in folder] == ["a.JPG", "b.png"]  # sorted, not recursive
    deep = expand_image_paths(str(tmp_path / "**" / "*.png"))
    assert [os.path.relpath(p, tmp_path) for p in deep] == ["b.png", os.path.join("sub", "c.png")]
    both = expand_image_paths([str(tmp_path / "b.png"), str(tmp_path)], unique=True)
    assert [os.path.basename(p) for p in both] == ["b.png", "a.JPG"]
    with pytest.raises(MissingPathError, match="images"):
        expand_image_paths(str(tmp_path / "missing.png"))
    with pytest.raises(SettingError, match="images"):
        expand_image_paths([])
    assert unique_stems(["x/a.png", "y/a.jpg", "b.png", "z/a.png"]) == ["a", "a_2", "b", "a_3"]


def test_predict_is_lazy_from_the_top_level_package():
    code = (
        "import sys, lgf\n"
        "print('lgf.evaluation' in sys.modules)\n"
        "import lgf.evaluation as ev\n"
        "print(lgf.predict is ev.predict, 'predict' in dir(lgf))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["False", "True True"]
