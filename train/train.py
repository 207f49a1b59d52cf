"""Train a RetinaNet with or without an LGF block: `python -m train.train --help`.

Examples:
  python -m train.train                                   # synthetic small-object set, mode lgf
  python -m train.train --train-img D/images --train-ann D/train.json \
      --val-img D/images --val-ann D/val.json --mode baseline --backbone resnet18 --img-size 512
  torchrun --nproc_per_node=2 -m train.train ...          # DistributedDataParallel
"""

import sys

from lgf.trainer import main

if __name__ == "__main__":
    sys.exit(main())
