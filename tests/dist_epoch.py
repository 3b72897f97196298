"""One epoch of the real trainer under torchrun, for test_distributed.py's step-for-step check.

``python dist_epoch.py CONFIG.json OUT.pt``: every rank builds the trainer from the DistillConfig
fields in CONFIG.json and runs one epoch; rank 0 saves its per-iteration losses (``losses``:
(epoch_iters, 4), [student loss summed over the steps, L1, bn_loss, generator loss]).
"""

import json
import sys

import torch

from ddad_fast.builder import build_trainer
from ddad_fast.distill_config import DistillConfig
from ddad_fast.distributed import shutdown

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        trainer = build_trainer(DistillConfig(**json.load(f)))
    trainer.train_epoch()
    if trainer.dist.is_main:
        torch.save(trainer.losses, sys.argv[2])
    shutdown(trainer.dist)
