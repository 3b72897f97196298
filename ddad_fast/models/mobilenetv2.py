"""MobileNetV2 backbone (Sandler et al. 2018), dilated for dense prediction.

Layer for layer torchvision's ``mobilenet_v2().features`` without its last 1x1 conv to 1280
channels (features end at the 320-channel inverted residual, as in DFAD's DeepLabV3 student, whose
padding, dilations and names differ: ``mobilenetv2_dfad``). Once the output stride is reached, a
stage's stride 2 becomes a dilation of 2 (the stage's first block keeps the previous dilation).
``width`` scales every layer's channels, rounded to multiples of 8 as torchvision does;
``max_blocks`` caps the blocks of each stage (the depth setting of the small variants).
"""

from __future__ import annotations

from torch import Tensor, nn

# Each stage: expansion t, channels c, blocks n, stride s (MobileNetV2's Table 2).
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never below ``divisor`` and never
    more than 10% below ``value`` (torchvision's ``_make_divisible``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(
    cin: int,
    cout: int,
    kernel: int = 3,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    padding: int | None = None,
) -> nn.Sequential:
    """conv (no bias; padding ``dilation * (kernel // 2)`` unless given) -> BN -> ReLU6."""
    if padding is None:
        padding = dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, dilation, groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t = 1) -> 3x3 depthwise (strided, dilated) -> 1x1 linear project;
    a residual connection when stride is 1 and the channel count is unchanged.

    forward: (N, cin, H, W) -> (N, cout, H / stride, W / stride).
    """

    def __init__(self, cin: int, cout: int, stride: int, dilation: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        layers = [conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2Backbone(nn.Module):
    """Stem conv (stride 2) + the 17 inverted residuals; features at ``output_stride``.

    forward: (N, in_channels, H, W) -> (N, out_channels, ceil(H / output_stride), ...), with
    ``out_channels`` = 320 at width 1.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        output_stride: int = 8,
        max_blocks: int | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (4, 8, 16):
            raise ValueError(f"output_stride must be 4, 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        cin = make_divisible(32 * width)
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, cin, 3, stride=2)]
        stride_so_far, dilation = 2, 1
        for expand, channels, count, stride in STAGES:
            cout = make_divisible(channels * width)
            previous = dilation
            if stride == 2 and stride_so_far >= output_stride:
                dilation, stride = dilation * 2, 1
            else:
                stride_so_far *= stride
            for i in range(count if max_blocks is None else min(count, max_blocks)):
                first = i == 0
                layers.append(
                    InvertedResidual(
                        cin, cout, stride if first else 1, previous if first else dilation, expand
                    )
                )
                cin = cout
        self.features = nn.Sequential(*layers)
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)
