"""Drop-in replacements for the loss code of existing DFAD / DeepInversion training scripts.

Change the imports, keep the script: the functions take the same inputs as the eager code they
replace and run the fastest implementation available (the fused ops where built).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .backends import FAST
from .ops.l1 import fused_takes


def l1_discrepancy(t: Tensor, s: Tensor) -> Tensor:
    """``F.l1_loss(s, t)``: mean |t - s|, for whatever ``F.l1_loss`` takes.

    t, s of one shape (logits (N, C), maps (N, C, H, W), ...) in float32, bfloat16 or float16: the
    fused op, an fp32 scalar. Anything else (float64, shapes that broadcast, ...): ``F.l1_loss``
    itself, its scalar in the promoted dtype, with its warning for broadcasting shapes.
    """
    if fused_takes(t, s):
        return FAST.l1_discrepancy(t, s)
    return F.l1_loss(s, t)


class DeepInversionFeatureHook:
    """DeepInversion's ``DeepInversionFeatureHook``: same constructor, ``r_feature``, ``close()``.

    After each forward of ``module`` (a BatchNorm2d), ``r_feature`` holds
    ``||mean(x) - running_mean||_2 + ||var(x) - running_var||_2`` of its input x (N, C, H, W).
    """

    def __init__(self, module: nn.BatchNorm2d):
        self.r_feature: Tensor | None = None
        self.hook = module.register_forward_hook(self.hook_fn)

    def hook_fn(self, module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.r_feature = FAST.bn_stats_loss(inputs[0], module.running_mean, module.running_var)

    def close(self) -> None:
        self.hook.remove()
