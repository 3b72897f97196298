"""CIFAR-style ResNet-18/34 (the "resnet*_8x" family of DFAD): 3x3 stem, no max-pool.

Module names follow the public CIFAR ResNets (conv1, bn1, layer1-4, linear; blocks with conv1,
bn1, conv2, bn2, shortcut) so their published state_dicts load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus an identity (or 1x1 conv-BN) shortcut.

    forward: (N, in_planes, H, W) -> (N, planes, H / stride, W / stride).
    """

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

    Convolutions start Kaiming-normal (fan_out), as in DFAD's resnet_8x.
    forward: (N, in_channels, H, W) -> logits (N, num_classes); global average pooling makes any
    H, W work (the registry asks for >= 8).
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
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def resnet18(num_classes: int, in_channels: int = 3) -> ResNetCIFAR:
    """CIFAR ResNet-18: [2, 2, 2, 2] BasicBlocks (11,173,962 parameters for 10 classes, RGB)."""
    return ResNetCIFAR((2, 2, 2, 2), num_classes, in_channels)


def resnet34(num_classes: int, in_channels: int = 3) -> ResNetCIFAR:
    """CIFAR ResNet-34: [3, 4, 6, 3] BasicBlocks (21,282,122 parameters for 10 classes, RGB)."""
    return ResNetCIFAR((3, 4, 6, 3), num_classes, in_channels)
