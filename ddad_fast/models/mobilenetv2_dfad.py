"""DFAD's MobileNetV2 backbone (its DeepLabV3 student's), layer for layer and name for name, so
DFAD's student checkpoints load strictly and give the logits they gave there.

It has the layers and parameter count of ``mobilenetv2.MobileNetV2Backbone`` at width 1 (stem conv,
17 inverted residuals, features end at 320 channels) but computes otherwise:

- every inverted residual pads its input by its dilation on each side *before* the 1x1 expansion
  and convolves depthwise without padding, so the depthwise conv's border is the expansion of zeros
  (ReLU6 of the BN's shift), not zeros;
- once the output stride (8) is reached, each later stage runs whole at the rate reached so far,
  and the rate then grows by the stage's stride: dilations 1 (64-channel stage), 2 (96), 2 (160),
  4 (320), where torchvision's rule gives 1,2,2,2 / 2 / 2,4,4 / 4;
- each block keeps its layers in one flat Sequential (``conv.0`` ... ``conv.7``), not in nested
  conv-BN-ReLU6 groups.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .mobilenetv2 import STAGES, conv_bn_relu6

OUTPUT_STRIDE = 8


class DFADInvertedResidual(nn.Module):
    """Pad by ``dilation`` -> 1x1 expand (skipped when t = 1) -> 3x3 depthwise (strided, dilated,
    unpadded) -> 1x1 linear project; a residual connection (to the unpadded input) when stride is 1
    and the channel count is unchanged.

    forward: (N, cin, H, W) -> (N, cout, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        layers = [*conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [
            *conv_bn_relu6(hidden, hidden, 3, stride, dilation, groups=hidden, padding=0),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.dilation = dilation
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(F.pad(x, (self.dilation,) * 4))
        return x + out if self.use_residual else out


class DFADMobileNetV2Backbone(nn.Module):
    """Stem conv (stride 2) + the 17 DFAD inverted residuals; features at output stride 8.

    forward: (N, in_channels, H, W) -> (N, 320, ceil(H / 8), ceil(W / 8)).
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.output_stride = OUTPUT_STRIDE
        cin = 32
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, cin, 3, stride=2)]
        stride_so_far, rate = 2, 1
        for expand, cout, count, stage_stride in STAGES:
            if stride_so_far == OUTPUT_STRIDE:
                stride, dilation, rate = 1, rate, rate * stage_stride
            else:
                stride, dilation = stage_stride, 1
                stride_so_far *= stage_stride
            for i in range(count):
                layers.append(
                    DFADInvertedResidual(cin, cout, stride if i == 0 else 1, dilation, expand)
                )
                cin = cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)  # DFAD's: fan_in

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
