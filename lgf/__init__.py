"""LGF: Local-Global Fusion blocks and a torchvision RetinaNet builder (DESIGN.md section 3).

    import lgf
    block = lgf.LGF(512)                                        # the fused block
    model = lgf.retinanet_resnet50_fpn(block="lgf", insert_level="C3", num_classes=2)
"""
from .blocks import CBAM, LGF, SE, LGFPaper
from .models import (
    BackboneWithBlock,
    block_complexity,
    build_retinanet,
    make_block,
    retinanet_resnet18_fpn,
    retinanet_resnet34_fpn,
    retinanet_resnet50_fpn,
    retinanet_resnet101_fpn,
)

__all__ = [
    "LGF",
    "LGFPaper",
    "SE",
    "CBAM",
    "BackboneWithBlock",
    "block_complexity",
    "build_retinanet",
    "make_block",
    "retinanet_resnet18_fpn",
    "retinanet_resnet34_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet101_fpn",
]
