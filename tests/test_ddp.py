"""Two-process DistributedDataParallel training on CPU (gloo), as torchrun would start it.

DDP with batch 1 per process averages the gradients of 2 images per step, which is what a single
process does with batch 1 and --accum-steps 2 over the same images: the weights must agree.
The evaluation gathered on rank 0 must equal evaluate_checkpoint on the saved weights.
"""

import os
import subprocess
import sys

import pytest
import torch

from lgf.data import generate_synthetic_coco
from lgf.evaluation import METRIC_NAMES, evaluate_checkpoint
from lgf.training.checkpoint import load_checkpoint
from train.train import parse_args, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(data, out):
    return [
        "--train-img",
        data["train_img"],
        "--train-ann",
        data["train_ann"],
        "--val-img",
        data["val_img"],
        "--val-ann",
        data["val_ann"],
        "--output-dir",
        str(out),
        "--backbone",
        "resnet18",
        "--mode",
        "lgf",
        "--img-size",
        "64",
        "--epochs",
        "1",
        "--iters-per-epoch",
        "2",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--score-thresh",
        "0",
        "--no-progress",
        "--threads",
        "1",
        "--lr",
        "1e-3",
    ]


@pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)
def test_two_process_gloo_ddp_matches_gradient_accumulation(tmp_path):
    data = generate_synthetic_coco(str(tmp_path / "data"), num_train=6, num_val=3, image_size=64)
    out = tmp_path / "ddp"
    init = "file://" + str(tmp_path / "rendezvous")
    procs = []
    for rank in range(2):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "train.train"]
                + _args(data, out)
                + ["--dist-url", init, "--device", "cpu"],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=240)[0].decode())
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    assert "world_size=2" in logs[0]

    single = tmp_path / "single"
    run(parse_args(_args(data, single) + ["--accum-steps", "2"]))
    a, b = load_checkpoint(str(out / "last.pt")), load_checkpoint(str(single / "last.pt"))
    assert a["world_size"] == 2 and len(a["rng"]) == 2 and a["step"] == b["step"] == 2
    # BatchNorm running statistics legitimately differ (DDP keeps rank 0's); parameters must not
    params = [k for k, _ in _skeleton(a).named_parameters()]
    assert params
    for k in params:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-5, atol=1e-6, msg=k)

    # rank 0 gathered both ranks' detections: the same as scoring the saved weights in one process
    m = evaluate_checkpoint(
        str(out / "last.pt"),
        data["val_img"],
        data["val_ann"],
        use_ema=False,
        batch_size=1,
        device="cpu",
    )
    assert m["num_images"] == a["metrics"]["num_images"] == 3
    assert m["num_detections"] == a["metrics"]["num_detections"] > 0
    for k in METRIC_NAMES:
        assert m[k] == pytest.approx(a["metrics"][k]), k


def _skeleton(ckpt):
    from lgf.modes import build_model

    return build_model(ckpt["args"], weights_backbone=None)
