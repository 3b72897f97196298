"""The model registry: every classifier and segmentation model the CLI can name, and the
generators."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from ..errors import ConfigError
from .deeplab import DeepLabV3
from .generator import Generator
from .generator_seg import SegGenerator
from .mobilenetv2 import MobileNetV2Backbone
from .mobilenetv2_dfad import DFADMobileNetV2Backbone
from .resnet_cifar import resnet18, resnet34
from .resnet_dilated import DilatedResNet
from .small import SmallCNN
from .vgg import MIN_IMAGE_SIZE as VGG_MIN_SIZE
from .vgg import vgg11_bn
from .wrn import WideResNet

__all__ = [
    "Generator",
    "SegGenerator",
    "build_model",
    "model_names",
    "model_task",
    "seg_model_names",
]

# name -> (constructor(num_classes, in_channels), smallest image side it supports)
_REGISTRY: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    "resnet18": (resnet18, 8),
    "resnet34": (resnet34, 8),
    "resnet18_8x": (resnet18, 8),
    "resnet34_8x": (resnet34, 8),
    "wrn40_1": (partial(WideResNet, 40, 1), 8),
    "wrn40_2": (partial(WideResNet, 40, 2), 8),
    "wrn16_1": (partial(WideResNet, 16, 1), 8),
    "wrn16_2": (partial(WideResNet, 16, 2), 8),
    "vgg11_bn": (vgg11_bn, VGG_MIN_SIZE),
    "smallcnn": (partial(SmallCNN, width=32), 4),
    "tinycnn": (partial(SmallCNN, width=16), 4),
}


def _deeplab_resnet(
    num_classes: int,
    in_channels: int,
    depths: tuple[int, int, int, int] = (3, 4, 6, 3),
    width: int = 64,
    aspp: int = 256,
    rates: tuple[int, ...] = (12, 24, 36),
    output_stride: int = 8,
) -> DeepLabV3:
    """DeepLabV3 on a dilated Bottleneck ResNet (ResNet-50 by default), output stride 8."""
    backbone = DilatedResNet(in_channels, depths, width, output_stride)
    return DeepLabV3(backbone, num_classes, aspp, rates)


def _deeplab_mobilenet(
    num_classes: int,
    in_channels: int,
    width: float = 1.0,
    aspp: int = 256,
    rates: tuple[int, ...] = (12, 24, 36),
    max_blocks: int | None = None,
    output_stride: int = 8,
) -> DeepLabV3:
    """DeepLabV3 on a dilated MobileNetV2 (width 1, every block by default), output stride 8."""
    backbone = MobileNetV2Backbone(in_channels, width, output_stride, max_blocks)
    return DeepLabV3(backbone, num_classes, aspp, rates)


# DFAD's DeepLabHead (network/segmentation/_deeplab.py) has atrous rates 12/24/32, torchvision's
# 12/24/36; the layers and their shapes are the same.
DFAD_RATES = (12, 24, 32)


def _deeplab_mobilenet_dfad(num_classes: int, in_channels: int) -> DeepLabV3:
    """DFAD's segmentation student: DeepLabV3 at DFAD's rates on DFAD's MobileNetV2."""
    return DeepLabV3(DFADMobileNetV2Backbone(in_channels), num_classes, rates=DFAD_RATES)


# Segmentation models: (N, in_channels, H, W) -> logit maps (N, num_classes, H, W). The full-width
# pair follows torchvision; the ``_dfad`` pair is DFAD's segmentation teacher and student, whose
# published checkpoints load strictly into them; the small ones (same family, fewer and narrower
# layers, atrous rates for feature maps of a few pixels) are the CPU default's.
_SEG_REGISTRY: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    "deeplabv3_resnet50": (_deeplab_resnet, 16),
    "deeplabv3_mobilenetv2": (_deeplab_mobilenet, 16),
    "deeplabv3_resnet50_dfad": (partial(_deeplab_resnet, rates=DFAD_RATES), 16),
    "deeplabv3_mobilenetv2_dfad": (_deeplab_mobilenet_dfad, 16),
    "deeplabv3_resnet_small": (
        partial(
            _deeplab_resnet,
            depths=(1, 1, 1, 1),
            width=16,
            aspp=64,
            rates=(1, 2, 3),
            output_stride=4,
        ),
        16,
    ),
    "deeplabv3_mobilenetv2_small": (
        partial(
            _deeplab_mobilenet,
            width=0.5,
            aspp=32,
            rates=(1, 2, 3),
            max_blocks=1,
            output_stride=4,
        ),
        16,
    ),
    "deeplabv3_mobilenetv2_tiny": (
        partial(_deeplab_mobilenet, width=0.25, aspp=32, rates=(1, 2, 3)),
        16,
    ),
}


def model_names() -> list[str]:
    """Every registered classifier name, sorted."""
    return sorted(_REGISTRY)


def seg_model_names() -> list[str]:
    """Every registered segmentation model name, sorted."""
    return sorted(_SEG_REGISTRY)


def model_task(name: str) -> str:
    """``"cls"`` for a classifier name, ``"seg"`` for a segmentation model name."""
    if name in _SEG_REGISTRY:
        return "seg"
    if name in _REGISTRY:
        return "cls"
    known = ", ".join(model_names() + seg_model_names())
    raise ConfigError(f"unknown model {name!r}; known models: {known}")


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """A freshly initialised model: a classifier maps (N, in_channels, size, size) to logits
    (N, num_classes), a segmentation model to logit maps (N, num_classes, size, size).

    Raises ConfigError for an unknown name, num_classes < 2, in_channels < 1, or an image_size
    below the architecture's minimum.
    """
    registry = _SEG_REGISTRY if model_task(name) == "seg" else _REGISTRY
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    make, min_size = registry[name]
    if image_size < min_size:
        raise ConfigError(
            f"{name} needs images of at least {min_size}x{min_size}, got {image_size}"
        )
    return make(num_classes, in_channels)
