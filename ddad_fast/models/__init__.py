"""The model registry: every classifier the CLI can name, and the generator."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from ..errors import ConfigError
from .generator import Generator
from .resnet_cifar import resnet18, resnet34
from .small import SmallCNN
from .vgg import MIN_IMAGE_SIZE as VGG_MIN_SIZE
from .vgg import vgg11_bn
from .wrn import WideResNet

__all__ = ["Generator", "build_model", "model_names"]

# name -> (constructor(num_classes, in_channels), smallest image side it supports)
_REGISTRY: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    "resnet18": (resnet18, 8),
    "resnet34": (resnet34, 8),
    "resnet18_8x": (resnet18, 8),
    "resnet34_8x": (resnet34, 8),
    "wrn40_2": (partial(WideResNet, 40, 2), 8),
    "wrn16_1": (partial(WideResNet, 16, 1), 8),
    "wrn16_2": (partial(WideResNet, 16, 2), 8),
    "vgg11_bn": (vgg11_bn, VGG_MIN_SIZE),
    "smallcnn": (partial(SmallCNN, width=32), 4),
    "tinycnn": (partial(SmallCNN, width=16), 4),
}


def model_names() -> list[str]:
    """Every registered classifier name, sorted."""
    return sorted(_REGISTRY)


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """A freshly initialised classifier mapping (N, in_channels, size, size) to (N, num_classes).

    Raises ValueError for an unknown name, num_classes < 2, in_channels < 1, or an image_size
    below the architecture's minimum.
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    make, min_size = _REGISTRY[name]
    if image_size < min_size:
        raise ConfigError(
            f"{name} needs images of at least {min_size}x{min_size}, got {image_size}"
        )
    return make(num_classes, in_channels)
