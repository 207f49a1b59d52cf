"""LGF: Local-Global Fusion blocks and a torchvision RetinaNet builder (docs/design.md §1, §4).

    import lgf
    block = lgf.LGF(512)                                        # the fused block
    model = lgf.retinanet_resnet50_fpn(block="lgf", insert_level="C3", num_classes=2)

`import lgf` loads the model library only. Training, evaluation and the experiment tools are the
subpackages lgf.training, lgf.evaluation and lgf.experiments, imported when asked for;
`lgf.evaluate_checkpoint` is looked up from lgf.evaluation on first use.
"""

from typing import Any

from lgf_ops._version import __version__

from .blocks import CBAM, LGF, SE, LGFPaper
from .counting import block_complexity, model_complexity
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
    "build_retinanet",
    "make_block",
    "model_complexity",
    "evaluate_checkpoint",
    "feature_enhancement_loss",
    "GLMD",
    "SIEFPN",
    "ASFFPN",
    "retinanet_resnet18_fpn",
    "retinanet_resnet34_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet101_fpn",
]


def __getattr__(name: str) -> Any:
    # Keeps `import lgf` free of the evaluation code (pycocotools, the checkpoint format).
    if name == "evaluate_checkpoint":
        from .evaluation import evaluate_checkpoint

        return evaluate_checkpoint
    raise AttributeError(f"module 'lgf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
