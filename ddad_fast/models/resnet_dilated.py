"""ImageNet-style ResNet backbone with Bottleneck blocks, dilated for dense prediction.

Layer for layer torchvision's ResNet-50 without ``avgpool``/``fc`` (7x7 stride-2 stem, 3x3 max-pool,
four stages of Bottlenecks of widths w, 2w, 4w, 8w, expansion 4), with its
``replace_stride_with_dilation``: once the output stride is reached, a stage's stride 2 becomes a
dilation of 2 (the stage's first block keeps the previous dilation, as torchvision does). Depth and
base width are settings, so small variants of the same family run on a CPU.
"""

from __future__ import annotations

from torch import Tensor, nn


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, dilated) -> 1x1 expand (x4), each with BN, plus a shortcut.

    forward: (N, cin, H, W) -> (N, 4 * planes, H / stride, W / stride).
    """

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class DilatedResNet(nn.Module):
    """Stem + ``depths`` Bottlenecks per stage; the final feature map is at ``output_stride``.

    forward: (N, in_channels, H, W) -> (N, 32 * width, ceil(H / output_stride), ...).
    ``depths=(3, 4, 6, 3), width=64`` is ResNet-50 (``out_channels`` 2048).
    """

    def __init__(
        self,
        in_channels: int = 3,
        depths: tuple[int, int, int, int] = (3, 4, 6, 3),
        width: int = 64,
        output_stride: int = 8,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin, stride_so_far, dilation = width, 4, 1
        stages = []
        for i, depth in enumerate(depths):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            previous = dilation
            if stride == 2 and stride_so_far >= output_stride:
                dilation, stride = dilation * 2, 1
            else:
                stride_so_far *= stride
            blocks = [Bottleneck(cin, planes, stride, previous)]
            cin = planes * Bottleneck.expansion
            blocks += [Bottleneck(cin, planes, 1, dilation) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
