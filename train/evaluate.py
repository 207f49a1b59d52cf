"""Evaluate a checkpoint with pycocotools:

    python -m train.evaluate runs/train/best.pt --val-img D/images --val-ann D/val.json \
        [--no-ema] [--batch-size 4] [--device cpu] [--output-json metrics.json]

Prints pycocotools' summary and the metric dict as JSON (AP, AP50, AP75, AP_small/medium/large,
AR1/10/100, AR_small/medium/large, per-class AP). Exit code 2 on bad input.
"""

import sys

from lgf.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
