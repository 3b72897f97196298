"""VGG-11 with BatchNorm, CIFAR style (one linear classifier after global pooling)."""

from __future__ import annotations

from torch import Tensor, nn

VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
MIN_IMAGE_SIZE = 32  # five 2x2 max-pools


class VGG(nn.Module):
    """conv3x3-BN-ReLU stacks with max-pools per ``layout``, global average pool, ``classifier``.

    forward: (N, in_channels, H, W) with H, W >= 32 -> logits (N, num_classes).
    """

    def __init__(self, layout: tuple[int | str, ...], num_classes: int, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [
                    nn.Conv2d(channels, item, 3, padding=1),
                    nn.BatchNorm2d(item),
                    nn.ReLU(inplace=True),
                ]
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def vgg11_bn(num_classes: int, in_channels: int = 3) -> VGG:
    """CIFAR VGG-11 with BatchNorm (9,231,114 parameters for 10 classes, RGB)."""
    return VGG(VGG11_LAYOUT, num_classes, in_channels)
