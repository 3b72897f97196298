"""ddad_fast: data-free knowledge distillation by Dual Discriminator Adversarial Distillation.

The public API: ``distill`` for any teacher and student module, the trainer and its config, and
drop-ins for existing training scripts.
"""

from .api import distill
from .bn_hooks import BNStatsHooks
from .builder import build_trainer
from .distill_config import DistillConfig
from .dropin import DeepInversionFeatureHook, l1_discrepancy
from .trainer import DDADTrainer, DistillResult

__version__ = "0.1.0"

__all__ = [
    "BNStatsHooks",
    "DDADTrainer",
    "DeepInversionFeatureHook",
    "DistillConfig",
    "DistillResult",
    "build_trainer",
    "distill",
    "l1_discrepancy",
]
