"""Wide-ResNet (Zagoruyko & Komodakis), the CIFAR version used by ZSKT, DAFL and CMI.

Module names follow that public implementation (conv1; block1-3 each holding ``layer``; blocks
with bn1, conv1, bn2, conv2, convShortcut; bn1; fc) so its published state_dicts load unchanged.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn


class WideBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3, plus a 1x1 conv shortcut if needed.

    When the width changes, the shortcut convolves the pre-activated input, as in the original.
    forward: (N, in_planes, H, W) -> (N, planes, H / stride, W / stride).
    """

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.convShortcut = (
            nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
            if in_planes != planes
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.convShortcut is None else self.convShortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-width: depth = 6n + 4, three stages of n blocks, widths 16k, 32k, 64k.

    forward: (N, in_channels, H, W) -> logits (N, num_classes); global average pooling makes any
    H, W work (the registry asks for >= 8).
    """

    def __init__(self, depth: int, width: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * width, 32 * width, 64 * width)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        stages = []
        for i, stride in enumerate((1, 2, 2)):
            blocks = [WideBlock(widths[i], widths[i + 1], stride)]
            blocks += [WideBlock(widths[i + 1], widths[i + 1], 1) for _ in range(n - 1)]
            # the extra ``layer`` level reproduces the public key names (block1.layer.0.conv1...)
            stages.append(nn.Sequential(OrderedDict(layer=nn.Sequential(*blocks))))
        self.block1, self.block2, self.block3 = stages
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
