"""The trainer end to end: real data smoke run + evaluation, resume equivalence, non-finite loss,
mode mapping and command-line errors. Small everywhere: resnet18, 64-128 px, a few steps."""

import json
import os

import pytest
import torch
from run_args import QUICK, synthetic_run

from lgf.evaluation import METRIC_NAMES, evaluate_checkpoint
from lgf.modes import MODES, build_model, model_kwargs
from lgf.training.checkpoint import load_checkpoint
from lgf.training.loop import NonFiniteLossError
from train.train import main, parse_args, run

TINY = QUICK + ["--threads", "2"]


def _synthetic(tmp, out, *extra):
    return synthetic_run(tmp / "syn", out, "--threads", 2, *extra, train=8, val=4)


def _params(ckpt, key="model"):
    sd = ckpt[key] if key == "model" else ckpt["ema"]["module"]
    return {k: v.float() for k, v in sd.items()}


def test_aerial_cars_train_eval_and_evaluate_checkpoint(aerial_cars_kit, tmp_path, capsys):
    d = aerial_cars_kit
    out = tmp_path / "run"
    summary = run(
        parse_args(
            [
                "--train-img",
                os.path.join(d, "images"),
                "--train-ann",
                os.path.join(d, "train.json"),
                "--val-img",
                os.path.join(d, "images"),
                "--val-ann",
                os.path.join(d, "val.json"),
                "--output-dir",
                str(out),
                "--mode",
                "lgf",
                "--img-size",
                "128",
                "--epochs",
                "1",
                "--max-iters",
                "2",
                "--max-images",
                "4",
                "--max-val-images",
                "4",
                "--ema",
                "--score-thresh",
                "0",
            ]
            + TINY
        )
    )
    m = summary["metrics"]
    assert set(METRIC_NAMES) <= set(m)
    assert set(m["per_class_AP"]) == {"car", "bus", "minibus"}
    assert m["num_images"] == 4 and m["num_detections"] > 0 and m["weights"] == "ema"
    assert summary["step"] == 2
    ckpt = load_checkpoint(str(out / "best.pt"))
    assert ckpt["args"]["num_classes"] == 4  # categories 1, 3, 4 -> labels 1..3 (+ label 0)
    assert ckpt["label_to_cat_id"] == [0, 1, 3, 4]
    for name in (
        "last.pt",
        "best.pt",
        "log.jsonl",
        "metrics.csv",
        "training_curves.png",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    evals = sorted(os.listdir(out / "eval"))
    assert evals == ["epoch_001.json"]
    with open(out / "eval" / evals[0]) as f:
        assert json.load(f)["AP"] == m["AP"]
    # the same weights scored by evaluate_checkpoint give the same numbers
    again = evaluate_checkpoint(
        str(out / "best.pt"),
        os.path.join(d, "images"),
        os.path.join(d, "val.json"),
        use_ema=True,
        batch_size=2,
        max_images=4,
    )
    for k in METRIC_NAMES + ("num_detections",):
        assert again[k] == pytest.approx(m[k]), k
    # and so does the command line, which also writes JSON
    from train.evaluate import main as eval_main

    js = tmp_path / "metrics.json"
    assert (
        eval_main(
            [
                str(out / "best.pt"),
                "--val-img",
                os.path.join(d, "images"),
                "--val-ann",
                os.path.join(d, "val.json"),
                "--max-images",
                "4",
                "--batch-size",
                "2",
                "--output-json",
                str(js),
                "--quiet",
                "--no-ema",
            ]
        )
        == 0
    )
    with open(js) as f:
        raw = json.load(f)
    assert raw["weights"] == "model" and set(METRIC_NAMES) <= set(raw)
    assert "num_detections" in capsys.readouterr().out


def test_resume_equals_uninterrupted(tmp_path):
    """2 epochs in one go == 1 epoch, resume, stop mid-epoch 2, resume to the end (default data)."""
    common = [
        "--epochs",
        "2",
        "--iters-per-epoch",
        "2",
        "--ema",
        "--ema-ramp",
        "2",
        "--warmup-iters",
        "3",
        "--lr",
        "1e-3",
        "--eval-every",
        "2",
    ]
    run(parse_args(_synthetic(tmp_path, tmp_path / "a", *common)))
    b_args = _synthetic(tmp_path, tmp_path / "b", *common)
    last = str(tmp_path / "b" / "last.pt")
    run(parse_args(b_args + ["--max-iters", "2"]))  # stops after epoch 1
    one_epoch = load_checkpoint(last)
    assert (one_epoch["epoch"], one_epoch["iter_in_epoch"], one_epoch["step"]) == (1, 0, 2)
    run(
        parse_args(b_args + ["--resume", last, "--max-iters", "3"])
    )  # stops in the middle of epoch 2
    mid = load_checkpoint(last)
    assert (mid["epoch"], mid["iter_in_epoch"], mid["step"]) == (1, 1, 3)
    run(parse_args(b_args + ["--resume", "auto"]))
    a = load_checkpoint(str(tmp_path / "a" / "last.pt"))
    b = load_checkpoint(last)
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 2
    pa, pb, p1 = _params(a), _params(b), _params(one_epoch)
    assert max((pa[k] - p1[k]).abs().max().item() for k in pa) > 1e-4  # epoch 2 changed the weights
    for k in pa:
        torch.testing.assert_close(pb[k], pa[k], rtol=1e-5, atol=1e-6, msg=k)
    ea, eb = _params(a, "ema"), _params(b, "ema")
    for k in ea:
        torch.testing.assert_close(eb[k], ea[k], rtol=1e-5, atol=1e-6, msg=k)
    assert b["ema"]["updates"] == a["ema"]["updates"] == 4
    assert b["scheduler"]["last_epoch"] == a["scheduler"]["last_epoch"] == 4
    assert b["optimizer"]["state"].keys() == a["optimizer"]["state"].keys()
    assert b["metrics"]["AP"] == pytest.approx(a["metrics"]["AP"])
    assert b["metrics"]["num_detections"] == a["metrics"]["num_detections"]


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path, monkeypatch, capsys):
    from torchvision.models.detection.retinanet import RetinaNet

    out = tmp_path / "run"
    args = _synthetic(tmp_path, out, "--epochs", "3", "--iters-per-epoch", "1", "--eval-every", "0")
    run(parse_args(args + ["--max-iters", "1"]))
    with open(out / "last.pt", "rb") as f:
        before = f.read()

    def nan_loss(self, targets, head_outputs, anchors):
        z = head_outputs["cls_logits"].sum() * 0
        return {"classification": z + float("nan"), "bbox_regression": z}

    monkeypatch.setattr(RetinaNet, "compute_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss at epoch 2, step 2"):
        run(parse_args(args + ["--resume", "auto"]))
    with pytest.raises(SystemExit) as exc:
        main(args + ["--resume", "auto"])
    assert exc.value.code == 3
    assert "non-finite training loss" in capsys.readouterr().err
    with open(out / "last.pt", "rb") as f:
        assert f.read() == before
    assert load_checkpoint(str(out / "last.pt"))["step"] == 1


def test_options_smoke_accum_clip_step_schedule_bf16(tmp_path):
    out = tmp_path / "run"
    options = ["--mode", "baseline", "--epochs", "1", "--accum-steps", "2", "--batch-size", "1"]
    options += ["--clip-grad", "5", "--lr-schedule", "step", "--lr-steps", "1", "--amp", "bf16"]
    options += ["--ema", "--opt", "adamw", "--lr", "1e-4", "--iters-per-epoch", "1"]
    options += ["--save-every-iters", "1", "--workers", "1"]
    summary = run(parse_args(synthetic_run(tmp_path / "syn", out, *options, size=96)))
    assert summary["step"] == 1 and summary["metrics"] is not None
    ckpt = load_checkpoint(str(out / "last.pt"))
    assert ckpt["args"]["amp"] == "bf16" and ckpt["ema"]["updates"] == 1
    assert ckpt["scaler"] is None  # a GradScaler only for fp16


def test_mode_mapping_builds_every_block():
    assert list(MODES) == ["baseline", "lgf", "lgf_paper", "se", "cbam", "glmd", "sie_fpn", "asff"]
    base = {"backbone": "resnet18", "num_classes": 3, "img_size": 96, "insert_level": "C3"}
    kw = model_kwargs(dict(base, mode="lgf", gate="softmax"))
    assert (
        kw["block"] == "lgf" and kw["gate"] == "softmax" and kw["min_size"] == kw["max_size"] == 96
    )
    names = {}
    for mode in (
        "baseline",
        "lgf",
        "lgf_paper",
        "se",
        "cbam",
    ):  # the peer modes: tests/test_peers.py
        model = build_model(dict(base, mode=mode))
        blk = getattr(model.backbone, "block", None)
        names[mode] = type(blk).__name__ if blk is not None else None
        assert model.transform.min_size == (96,) and model.transform.max_size == 96
        assert model.head.classification_head.num_classes == 3
    assert names["baseline"] is None and len({v for v in names.values()}) == len(names)
    with pytest.raises(ValueError, match="unknown mode"):
        model_kwargs(dict(base, mode="nope"))


def test_cli_errors_name_the_input(tmp_path, capsys):
    missing = str(tmp_path / "no_such_dir")
    ann = tmp_path / "ann.json"
    ann.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "x"}]}')
    with pytest.raises(SystemExit) as exc:
        main(["--train-img", missing, "--train-ann", str(ann), "--output-dir", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert "no_such_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--train-img", str(tmp_path), "--output-dir", str(tmp_path / "o")])
    assert "--train-img and --train-ann must be given together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            [
                "--train-img",
                str(tmp_path),
                "--train-ann",
                str(tmp_path / "x.json"),
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
    assert "x.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(_synthetic(tmp_path, tmp_path / "o", "--resume", str(tmp_path / "gone.pt")))
    assert "gone.pt" in capsys.readouterr().err


def test_resume_refuses_another_model(tmp_path, capsys):
    out = tmp_path / "run"
    args = _synthetic(tmp_path, out, "--epochs", "1", "--max-iters", "1", "--eval-every", "0")
    run(parse_args(args + ["--mode", "baseline"]))
    with pytest.raises(
        ValueError, match="trained with --mode baseline but this run has --mode lgf"
    ):
        run(parse_args(args + ["--mode", "lgf", "--resume", "auto"]))


@pytest.mark.parametrize("mode", ["glmd", "sie_fpn", "asff"])
def test_peer_modes_train_and_evaluate(tmp_path, mode):
    """Each comparison design trains a few iterations with a finite loss and evaluates."""
    out = tmp_path / mode
    summary = run(
        parse_args(
            _synthetic(
                tmp_path,
                out,
                "--mode",
                mode,
                "--epochs",
                "1",
                "--max-iters",
                "2",
                "--score-thresh",
                "0",
            )
        )
    )
    assert summary["step"] == 2
    assert set(METRIC_NAMES) <= set(summary["metrics"])
    with open(out / "log.jsonl") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r.get("type") == "epoch" and "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses)


def test_feature_enhancement_regulariser_enters_the_loss(tmp_path):
    out = tmp_path / "fe"
    run(
        parse_args(
            _synthetic(
                tmp_path,
                out,
                "--mode",
                "baseline",
                "--epochs",
                "1",
                "--max-iters",
                "2",
                "--feature-enhancement",
                "--fe-lambda4",
                "1e-5",
                "--fe-lambda2",
                "1.0",
            )
        )
    )
    with open(out / "log.jsonl") as f:
        rows = [json.loads(line) for line in f]
    fe = [r["loss_feature_enhancement"] for r in rows if "loss_feature_enhancement" in r]
    assert fe and all(v != 0 and torch.isfinite(torch.tensor(v)) for v in fe)
