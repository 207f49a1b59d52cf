"""COCO evaluation of detection models (docs/design.md §5).

- `metrics`: `METRIC_NAMES` and `coco_metrics` (pycocotools) of a result list.
- `detections`: a model's predictions as COCO result dicts (`predict`, `predictions_to_coco`).
- `evaluate`: `evaluate`, predictions gathered across DDP ranks and scored on rank 0.
- `checkpoint_eval`: `evaluate_checkpoint`, a trainer checkpoint scored on a dataset.
"""

from .checkpoint_eval import evaluate_checkpoint
from .detections import predict, predictions_to_coco
from .evaluate import evaluate
from .metrics import METRIC_NAMES, coco_metrics

__all__ = [
    "METRIC_NAMES",
    "coco_metrics",
    "predict",
    "predictions_to_coco",
    "evaluate",
    "evaluate_checkpoint",
]
