"""DeepLabV3 (Chen et al. 2017): a dilated backbone, atrous spatial pyramid pooling (ASPP), a
3x3 conv and a 1x1 classifier, logits upsampled bilinearly to the input size.

The head is torchvision's ``DeepLabHead`` layer for layer (ASPP of 256 channels at rates 12/24/36
with an image-pooling branch, the 3x3 conv-BN-ReLU after it, the final 1x1 conv with bias), so the
full-width models have torchvision's parameter counts; the backbone is any module with an
``out_channels`` attribute (``resnet_dilated``, ``mobilenetv2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """conv (no bias, size-preserving, dilated) -> BN -> ReLU."""
    padding = dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Module):
    """Image-level branch: global average pool -> 1x1 conv-BN-ReLU -> upsample back.

    forward: (N, cin, H, W) -> (N, cout, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv_bn_relu(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """A 1x1 branch, one 3x3 branch per atrous rate and the pooling branch, concatenated and
    projected by 1x1 conv-BN-ReLU (+ dropout).

    forward: (N, cin, H, W) -> (N, channels, H, W).
    """

    def __init__(
        self, cin: int, channels: int, rates: tuple[int, ...], dropout: float = 0.5
    ) -> None:
        super().__init__()
        branches = [_conv_bn_relu(cin, channels, 1)]
        branches += [_conv_bn_relu(cin, channels, 3, rate) for rate in rates]
        branches.append(ASPPPooling(cin, channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *_conv_bn_relu((len(rates) + 2) * channels, channels, 1), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """ASPP -> 3x3 conv-BN-ReLU -> 1x1 conv to class logits: (N, cin, h, w) -> (N, K, h, w)."""

    def __init__(
        self,
        cin: int,
        num_classes: int,
        channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.5,
    ) -> None:
        super().__init__(
            ASPP(cin, channels, rates, dropout),
            _conv_bn_relu(channels, channels, 3),
            nn.Conv2d(channels, num_classes, 1),
        )


class DeepLabV3(nn.Module):
    """backbone -> DeepLabHead -> bilinear upsampling to the input size.

    forward: (N, in_channels, H, W) -> logit maps (N, num_classes, H, W); the head works at the
    backbone's output stride (``backbone.output_stride``: features are H/8 x W/8 at stride 8).
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        channels: int = 256,
        rates: tuple[int, ...] = (12, 24, 36),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = DeepLabHead(backbone.out_channels, num_classes, channels, rates, dropout)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
