"""ddad_fast: data-free knowledge distillation by Dual Discriminator Adversarial Distillation.

The public API: the trainer and its config, and drop-ins for existing training scripts.
"""

from .bn_hooks import BNStatsHooks
from .builder import build_trainer
from .distill_config import DistillConfig
from .dropin import DeepInversionFeatureHook, l1_discrepancy
from .trainer import DDADTrainer

__version__ = "0.1.0"

__all__ = [
    "BNStatsHooks",
    "DDADTrainer",
    "DeepInversionFeatureHook",
    "DistillConfig",
    "build_trainer",
    "l1_discrepancy",
]
