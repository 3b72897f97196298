"""Drop-in replacements for the loss code of existing DFAD / DeepInversion training scripts.

Change the imports, keep the script: the functions take the same inputs as the eager code they
replace and run the fastest implementation available (the fused ops where built).
"""

from __future__ import annotations

from torch import Tensor, nn

from .backends import FAST


def l1_discrepancy(t: Tensor, s: Tensor) -> Tensor:
    """``F.l1_loss(s, t)``: mean |t - s| over logits (N, C) or maps (N, C, H, W), fp32 scalar."""
    return FAST.l1_discrepancy(t, s)


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
