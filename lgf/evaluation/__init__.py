"""COCO evaluation and prediction of detection models (docs/design.md §5).

- `area_ranges`: the size-bucket protocols (coco, tiny) and every metric name.
- `metrics`: `METRIC_NAMES` and `coco_metrics` (pycocotools) of a result list.
- `detections`: model outputs as COCO result dicts (`predictions_to_coco`, `predict_loader`).
- `evaluate`: `evaluate`, predictions gathered across DDP ranks and scored on rank 0.
- `checkpoint_eval`: `evaluate_checkpoint`, a trainer checkpoint scored on a dataset.
- `prediction` (`predict`) and `predict_checkpoint`: detections on image files (folders, globs)
  as COCO results; `image_files` and `draw` are their helpers.
"""

from .area_ranges import ALL_METRIC_NAMES, AREA_RANGES, area_protocol, check_metric
from .checkpoint_eval import evaluate_checkpoint
from .detections import predict_loader, predictions_to_coco
from .evaluate import evaluate
from .metrics import METRIC_NAMES, coco_metrics
from .predict_checkpoint import predict_checkpoint
from .prediction import predict

__all__ = [
    "ALL_METRIC_NAMES",
    "AREA_RANGES",
    "METRIC_NAMES",
    "area_protocol",
    "check_metric",
    "coco_metrics",
    "predict",
    "predict_checkpoint",
    "predict_loader",
    "predictions_to_coco",
    "evaluate",
    "evaluate_checkpoint",
]
