"""Resume compares every setting that shapes the network or the optimisation (issue 19): a
changed --opt or --lr is refused by name (no KeyError, no silently ignored value), harmless
changes warn, run-time ones pass; and the epoch loss logged after a mid-epoch resume is the
uninterrupted run's."""

import dataclasses
import json

import pytest
from run_args import synthetic_run

from lgf.training.checkpoint import primitive_args
from lgf.training.config import TrainConfig
from lgf.training.resume_check import (
    FREE_ON_RESUME,
    WARN_ON_RESUME,
    check_resume_compatible,
)
from lgf.utils.setting_errors import SettingError
from train.flags import flag
from train.train import parse_args, run


def _refusal(saved, **changes):
    with pytest.raises(SettingError) as err:
        check_resume_compatible(primitive_args(saved), dataclasses.replace(saved, **changes), "p")
    return str(err.value.renamed(flag))


@pytest.mark.parametrize(
    "changes",
    [
        {"opt": "sgd"},
        {"lr": 0.01},
        {"momentum": 0.5},
        {"weight_decay": 0.0},
        {"lr_schedule": "step"},
        {"lr_steps": [2, 3]},
        {"epochs": 20},
        {"batch_size": 8},
        {"accum_steps": 2},
        {"warmup_iters": 10},
        {"amp": "bf16"},
        {"clip_grad": 0.0},
        {"ema": True},
        {"seed": 1},
        {"hflip": 0.0},
        {"max_images": 3},
        {"feature_enhancement": True},
    ],
    ids=lambda c: next(iter(c)),
)
def test_each_optimisation_setting_is_refused_by_name(changes):
    saved = TrainConfig()
    key, new = next(iter(changes.items()))
    old = getattr(saved, key)
    msg = _refusal(saved, **changes)
    assert f"trained with {flag(key)} {old} but this run has {flag(key)} {new}" in msg


def test_all_differences_are_listed_at_once():
    msg = _refusal(TrainConfig(), opt="sgd", lr=0.01, batch_size=2, mode="baseline")
    for f in ("--opt", "--lr", "--batch-size", "--mode"):
        assert f"{f} " in msg
    assert "must keep the model and training settings" in msg


def test_harmless_changes_warn_and_runtime_ones_pass():
    saved = TrainConfig()
    with pytest.warns(UserWarning, match="score_thresh 0.3 instead of the checkpoint's 0.05"):
        check_resume_compatible(
            primitive_args(saved), dataclasses.replace(saved, score_thresh=0.3), "p"
        )
    free = dataclasses.replace(saved, workers=0, threads=1, max_iters=7, output_dir="o")
    check_resume_compatible(primitive_args(saved), free, "p")


def test_settings_a_checkpoint_does_not_record_are_compared_with_their_defaults():
    saved = primitive_args(TrainConfig())
    del saved["accum_steps"]
    check_resume_compatible(saved, TrainConfig(), "p")
    with pytest.raises(SettingError, match="accum_steps 1 but this run has accum_steps 4"):
        check_resume_compatible(saved, TrainConfig(accum_steps=4), "p")


def test_the_lists_name_real_settings():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert WARN_ON_RESUME <= fields and FREE_ON_RESUME <= fields


def _tiny(tmp_path, *extra):
    common = ["--threads", 2, "--epochs", 2, "--eval-every", 0]
    return synthetic_run(tmp_path / "syn", tmp_path / "run", *common, *extra)


def test_a_changed_opt_or_lr_is_refused_on_a_real_resume(tmp_path):
    run(parse_args(_tiny(tmp_path, "--opt", "adamw", "--lr", "1e-3", "--max-iters", "1")))
    with pytest.raises(SettingError, match="trained with --opt adamw but this run has --opt sgd"):
        run(parse_args(_tiny(tmp_path, "--opt", "sgd", "--lr", "1e-3", "--resume", "auto")))
    with pytest.raises(SettingError, match="trained with --lr 0.001 but this run has --lr 0.01"):
        run(parse_args(_tiny(tmp_path, "--opt", "adamw", "--lr", "1e-2", "--resume", "auto")))


def _records(path, kind):
    with open(path) as f:
        return [r for r in map(json.loads, f) if r["type"] == kind]


def test_epoch_loss_after_a_mid_epoch_resume_equals_the_uninterrupted_run(tmp_path):
    common = ["--epochs", "1", "--log-every", "3", "--save-every-iters", "1", "--warmup-iters", "0"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    run(parse_args(_tiny(whole, *common, "--synthetic-train", "8")))
    run(parse_args(_tiny(parts, *common, "--synthetic-train", "8", "--max-iters", "2")))
    run(parse_args(_tiny(parts, *common, "--synthetic-train", "8", "--resume", "auto")))
    a = _records(whole / "run" / "log.jsonl", "epoch")
    b = [r for r in _records(parts / "run" / "log.jsonl", "epoch") if r["step"] == 4]
    assert len(a) == 1 and len(b) == 1 and a[0]["step"] == 4
    for k in ("loss", "loss_classification", "loss_bbox_regression"):
        assert b[0][k] == pytest.approx(a[0][k], rel=1e-6, abs=0), k
    # the loss of the window logged at step 3 (steps 1-3, cut by the stop after step 2) too
    ta = {r["step"]: r["loss"] for r in _records(whole / "run" / "log.jsonl", "train")}
    tb = {r["step"]: r["loss"] for r in _records(parts / "run" / "log.jsonl", "train")}
    assert ta.keys() == tb.keys() == {3, 4}
    for s in ta:
        assert tb[s] == pytest.approx(ta[s], rel=1e-6, abs=0), s
