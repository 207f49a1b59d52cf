"""LGF: Local-Global Fusion blocks and a torchvision RetinaNet builder (DESIGN.md section 3).

import lgf
block = lgf.LGF(512)                                        # the fused block
model = lgf.retinanet_resnet50_fpn(block="lgf", insert_level="C3", num_classes=2)
"""

from .blocks import CBAM, LGF, SE, LGFPaper
from .evaluation import evaluate_checkpoint
from .models import (
    BackboneWithBlock,
    block_complexity,
    build_retinanet,
    make_block,
    model_complexity,
    retinanet_resnet18_fpn,
    retinanet_resnet34_fpn,
    retinanet_resnet50_fpn,
    retinanet_resnet101_fpn,
)
from .peers import ASFFPN, GLMD, SIEFPN
from .regularizers import feature_enhancement_loss

__all__ = [
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
