"""TensorBoard scalars of a run (`tensorboard=True`): the records of lgf.training.run_log.

Writes to OUTPUT_DIR/tensorboard with torch.utils.tensorboard, which needs the optional package
`tensorboard` (`pip install lgf[tensorboard]`). Each "train" record gives train/<loss> and
train/lr at its optimizer step, each "epoch" record epoch/<loss>, each "eval" record eval/<metric>
for the numeric metrics. A resumed run drops the events after the checkpoint's step, as the logs
do, so the curves hold no work that was redone.
"""

from __future__ import annotations

import os
from typing import Any

from ..utils.setting_errors import SettingError

__all__ = ["TensorBoardSink", "TENSORBOARD_DIR", "require_tensorboard"]

TENSORBOARD_DIR = "tensorboard"
_SKIPPED = ("type", "step", "epoch", "num_images", "num_detections")


def _summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingError(
            lambda n: (
                f"{n('tensorboard')} needs the package 'tensorboard', which is not installed: "
                "pip install tensorboard (or pip install lgf[tensorboard])"
            )
        ) from None
    return SummaryWriter


def require_tensorboard() -> None:
    """Raises SettingError (naming `tensorboard`) when the tensorboard package is missing."""
    _summary_writer_class()


class TensorBoardSink:
    """Receives run-log records and writes their numbers as TensorBoard scalars."""

    def __init__(self, output_dir: str, resume_step: int | None = None):
        writer_class = _summary_writer_class()
        self.log_dir = os.path.join(output_dir, TENSORBOARD_DIR)
        purge = None if resume_step is None else resume_step + 1
        self.writer = writer_class(self.log_dir, purge_step=purge)

    def write(self, record: dict[str, Any]) -> None:
        kind, step = record.get("type"), record.get("step")
        if kind not in ("train", "epoch", "eval") or step is None:
            return
        for key, value in record.items():
            if key in _SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(f"{kind}/{key}", value, global_step=int(step))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
