"""``FirstOutput``: a model whose forward returns several outputs, seen through its first."""

from __future__ import annotations

from torch import Tensor, nn


class FirstOutput(nn.Module):
    """Wraps a model whose forward may return a tuple or list ``(logits, features, ...)``; its
    forward returns the first element, logits (N, K) (or maps (N, K, H, W)), and a tensor as it is.

    The wrapped model is a submodule, so its BatchNorm layers and weights are the wrapper's.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W) images; returns the model's (first) output."""
        out = self.model(x)
        return out[0] if isinstance(out, tuple | list) else out
