"""CIFAR-style ResNet-18/34 (the "resnet*_8x" family of DFAD): 3x3 stem, no max-pool.

Module names follow the public CIFAR ResNets (conv1, bn1, layer1-4, linear; blocks with conv1,
bn1, conv2, bn2, shortcut) so their published state_dicts load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus an identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet with ``blocks`` BasicBlocks per stage (widths 64, 128, 256, 512; strides 1, 2, 2, 2).

    forward: (N, in_channels, H, W) -> logits (N, num_classes); any H, W >= 8.
    """

    def __init__(self, blocks: tuple[int, int, int, int], num_classes: int, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        stages = []
        for planes, stride, count in zip((64, 128, 256, 512), (1, 2, 2, 2), blocks, strict=True):
            layers = []
            for s in [stride] + [1] * (count - 1):
                layers.append(BasicBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int, in_channels: int = 3) -> ResNetCIFAR:
    return ResNetCIFAR((2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int, in_channels: int = 3) -> ResNetCIFAR:
    return ResNetCIFAR((3, 4, 6, 3), num_classes, in_channels)
