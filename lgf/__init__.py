"""LGF: Local-Global Fusion blocks and torchvision detector builders (docs/design.md §1, §4).

    import lgf
    block = lgf.LGF(512)                                        # the fused block
    model = lgf.retinanet_resnet50_fpn(block="lgf", insert_level="C3", num_classes=2)
    model = lgf.insert_block(torchvision.models.detection.fasterrcnn_resnet50_fpn(...), "C3")
    model = lgf.build_detector("fcos", block="lgf", num_classes=2)

`import lgf` loads the model library only. Training, evaluation and the experiment tools are the
subpackages lgf.training, lgf.evaluation and lgf.experiments, imported when asked for;
`lgf.evaluate_checkpoint` and `lgf.predict` are looked up from lgf.evaluation on first use.
"""

from typing import Any

from lgf_ops._version import __version__

from .blocks import CBAM, LGF, SE, LGFPaper
from .counting import block_complexity, model_complexity
from .detectors import build_detector
from .insert import insert_block
from .models import (
    BackboneWithBlock,
    build_retinanet,
    make_block,
    retinanet_resnet18_fpn,
    retinanet_resnet34_fpn,
    retinanet_resnet50_fpn,
    retinanet_resnet101_fpn,
)
from .peers import ASFFPN, GLMD, SIEFPN
from .regularizers import feature_enhancement_loss

__all__ = [
    "__version__",
    "LGF",
    "LGFPaper",
    "SE",
    "CBAM",
    "BackboneWithBlock",
    "block_complexity",
    "build_detector",
    "build_retinanet",
    "insert_block",
    "make_block",
    "model_complexity",
    "evaluate_checkpoint",
    "predict",
    "feature_enhancement_loss",
    "GLMD",
    "SIEFPN",
    "ASFFPN",
    "retinanet_resnet18_fpn",
    "retinanet_resnet34_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet101_fpn",
]


_LAZY = ("evaluate_checkpoint", "predict")


def __getattr__(name: str) -> Any:
    # Keeps `import lgf` free of the evaluation code (pycocotools, the checkpoint format).
    if name in _LAZY:
        from . import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module 'lgf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
