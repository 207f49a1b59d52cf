"""Tests of the complexity report (lgf/experiments/complexity.py, `python -m train.complexity`)."""

import json

import pytest
import torch

from lgf import block_complexity
from lgf.experiments.complexity import (
    build_complexity_model,
    complexity_modes,
    complexity_report,
    format_markdown,
    forward_fn,
    measure_latency,
)
from lgf.models import level_channels
from lgf.modes import MODES
from train import complexity as complexity_cli

SIZE = 64


@pytest.fixture(scope="module")
def report():
    return complexity_report(backbone="resnet18", img_size=SIZE, num_classes=3, warmup=1, repeats=2)


def test_rows_for_every_mode_plus_the_reference_backend(report):
    names = [r["mode"] for r in report["rows"]]
    assert complexity_modes() == list(MODES)
    assert names == [n for m in MODES for n in ([m, "lgf (reference)"] if m == "lgf" else [m])]
    for r in report["rows"]:
        assert r["params"] > 1e6 and r["flops"] > 1e8
        assert r["latency_ms"] > 0 and r["images_per_s"] == pytest.approx(1000.0 / r["latency_ms"])
        assert r["latency_p25_ms"] <= r["latency_ms"] <= r["latency_p75_ms"]


def test_deltas_match_the_block_alone(report):
    rows = {r["mode"]: r for r in report["rows"]}
    assert rows["baseline"]["delta_params"] == 0 and rows["baseline"]["delta_flops"] == 0
    channels = level_channels("resnet18", "C3")
    for mode in ("lgf", "se", "cbam", "lgf_paper"):
        params, flops = block_complexity(mode, channels, SIZE // 8, SIZE // 8)
        assert rows[mode]["delta_params"] == params
        assert rows[mode]["delta_flops"] == flops
    # the fused op is counted by its registered formula (40 FLOPs per element), the reference
    # backend only by its depthwise conv (18 per element): same params, fewer counted FLOPs
    ref = rows["lgf (reference)"]
    assert ref["params"] == rows["lgf"]["params"]
    assert rows["lgf"]["flops"] - ref["flops"] == (40 - 18) * channels * (SIZE // 8) ** 2


def test_reference_row_really_runs_the_reference_backend():
    model = build_complexity_model("lgf", "resnet18", SIZE, 3, lgf_backend="reference")
    assert model.backbone.block.backend == "reference" and not model.training
    with pytest.raises(ValueError, match="no LGF block"):
        build_complexity_model("se", "resnet18", SIZE, 3, lgf_backend="reference")
    fused = build_complexity_model("lgf", "resnet18", SIZE, 3)
    fused.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        a, b = forward_fn(model)(x), forward_fn(fused)(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4)


def test_measure_latency_interleaves_and_validates():
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    times = measure_latency(fns, torch.zeros(1), warmup=1, repeats=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert all(len(v) == 3 and min(v) >= 0 for v in times.values())
    with pytest.raises(ValueError):
        measure_latency(fns, torch.zeros(1), repeats=0)


def test_markdown_and_cli_json(report, tmp_path, capsys):
    text = format_markdown(report)
    lines = text.splitlines()
    assert lines[0].startswith(
        "| mode | params (M) | Δparams (M) | FLOPs (G) | ΔFLOPs (M) | latency"
    )
    assert len([l for l in lines if l.startswith("| ")]) == len(report["rows"]) + 1
    assert "model.backbone" in text and "NMS" in text and f"{SIZE}x{SIZE}" in text

    out = tmp_path / "c.json"
    assert (
        complexity_cli.main(
            [
                "--modes",
                "baseline,lgf",
                "--backbone",
                "resnet18",
                "--img-size",
                "32",
                "--warmup",
                "0",
                "--repeats",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| lgf (reference) |" in printed
    data = json.load(open(out))
    assert [r["mode"] for r in data["rows"]] == ["baseline", "lgf", "lgf (reference)"]
    assert data["meta"]["img_size"] == 32 and data["meta"]["batch_size"] == 1
    assert complexity_cli.main(["--modes", "baseline,nope", "--img-size", "32"]) == 2
    assert "nope" in capsys.readouterr().err
