"""One timed run of a trainer, for bench_trainer.py: the wall time of every optimizer step.

    python benchmarks/trainer_timing.py ours --steps 14 --out T.json -- <train.train flags>
    python benchmarks/trainer_timing.py reference --tv-references DIR --img-size 512 \
        --num-classes 5 --steps 14 --out T.json -- <references/detection/train.py flags>

A global optimizer step hook records time.perf_counter() after every step, with the shape of
the padded image batch of that step's (last) training forward, seen through torchvision's
GeneralizedRCNNTransform; after --steps steps both go to --out and the process ends (os._exit,
so neither trainer evaluates or saves).
The reference's model is built by its own torchvision.models.get_model call, given the same
input size (min_size = max_size = --img-size) and class count as ours; its evaluation between
epochs is replaced by a no-op. Nothing of the reference is copied: it is imported from DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trainer", choices=("ours", "reference"))
    p.add_argument("--steps", type=int, required=True, help="optimizer steps to time")
    p.add_argument("--out", required=True, help="JSON file of the step times")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--tv-references", help="torchvision's references/detection (reference)")
    p.add_argument("--img-size", type=int, help="the reference model's min_size = max_size")
    p.add_argument("--num-classes", type=int, help="the reference model's class count")
    return p.parse_known_args(argv)


def _record_batch_shapes() -> list:
    """Patches GeneralizedRCNNTransform.forward to note each training batch's padded shape."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    shapes = []
    forward = GeneralizedRCNNTransform.forward

    def noting_forward(self, images, targets=None):
        batch, targets = forward(self, images, targets)
        if self.training:
            shapes.append(list(batch.tensors.shape))
        return batch, targets

    GeneralizedRCNNTransform.forward = noting_forward
    return shapes


def _record_steps(steps: int, out: str) -> dict:
    record = {"stamps": [], "shapes": [], "complete": False}
    shapes = _record_batch_shapes()

    def hook(optimizer, args, kwargs):
        record["stamps"].append(time.perf_counter())
        record["shapes"].append(shapes[-1] if shapes else None)
        if len(record["stamps"]) >= steps:
            with open(out, "w", encoding="utf-8") as f:
                json.dump({**record, "complete": True}, f)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    register_optimizer_step_post_hook(hook)
    return record


def _run_ours(flags: list[str]) -> None:
    sys.path.insert(0, REPO)
    from train.train import main

    main(flags)


def _run_reference(refs: str, img_size: int, num_classes: int, flags: list[str]) -> None:
    import torchvision

    sys.path.insert(0, os.path.abspath(refs))
    import engine

    import train as reference

    build = torchvision.models.get_model

    def same_model(name, **kwargs):
        kwargs.update(num_classes=num_classes, min_size=img_size, max_size=img_size)
        return build(name, **kwargs)

    def no_evaluation(*args, **kwargs):
        return None

    torchvision.models.get_model = same_model
    engine.evaluate = reference.evaluate = no_evaluation
    reference.main(reference.get_args_parser().parse_args(flags))


def main(argv: list[str] | None = None) -> int:
    args, rest = _parse(argv)
    rest = [a for a in rest if a != "--"]
    if args.threads:
        torch.set_num_threads(args.threads)
    record = _record_steps(args.steps, args.out)
    if args.trainer == "ours":
        _run_ours(rest)
    else:
        if not (args.tv_references and args.img_size and args.num_classes):
            raise SystemExit("reference runs need --tv-references, --img-size and --num-classes")
        _run_reference(args.tv_references, args.img_size, args.num_classes, rest)
    with open(args.out, "w", encoding="utf-8") as f:  # the trainer ended before --steps steps
        json.dump(record, f)
    return 1


if __name__ == "__main__":
    sys.exit(main())
