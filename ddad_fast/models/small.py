"""A small CNN for the embedded default (8x8 grey digits): four conv-BN-ReLU, one max-pool."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    """conv3x3 (no bias, size-preserving) -> BN -> ReLU, as a list to splice into a Sequential."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


class SmallCNN(nn.Module):
    """conv(w)-conv(w)-maxpool-conv(2w)-conv(2w)-avgpool-linear.

    forward: (N, in_channels, H, W) -> logits (N, num_classes); any H, W >= 2 (one 2x2 max-pool),
    the registry asks for >= 4.
    """

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn_relu(in_channels, width),
            *_conv_bn_relu(width, width),
            nn.MaxPool2d(2),
            *_conv_bn_relu(width, 2 * width),
            *_conv_bn_relu(2 * width, 2 * width),
        )
        self.linear = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))
