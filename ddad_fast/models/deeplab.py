"""DeepLabV3 (Chen et al. 2017): a dilated backbone, atrous spatial pyramid pooling (ASPP), a
3x3 conv and a 1x1 classifier, logits upsampled bilinearly to the input size.

The head is torchvision's ``DeepLabHead`` layer for layer and name for name (ASPP of 256 channels
at rates 12/24/36 with an image-pooling branch, the 3x3 conv-BN-ReLU after it, the final 1x1 conv
with bias), so the full-width models have torchvision's parameter counts and head state_dict keys;
the backbone is any module with an ``out_channels`` attribute (``resnet_dilated``,
``mobilenetv2``).
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Names the head's keys had before they took torchvision's (old key prefix -> new, relative to
# the head). The 3x3 conv-BN-ReLU was a Sequential of its own at 1 and the classifier sat at 2; the
# pooling branch kept its conv-BN-ReLU in ``conv``, behind a functional average pool.
_HEAD_RENAMED = {"1.0.": "1.", "1.1.": "2.", "2.": "4."}
_POOLING_RENAMED = re.compile(r"^0\.convs\.(\d+)\.conv\.([01])\.")


def _upgrade_head(state: dict[str, Any], prefix: str) -> None:
    """Rename, in place, the keys under ``prefix`` (a DeepLabHead's) that use its old names.

    Old and new names overlap (``2.weight`` was the classifier's, is now the BN's), so a state
    is taken as old only when it has the old 3x3 conv's ``1.0.weight``; the pooling branch's
    ``convs.<i>.conv.<j>`` names are renamed wherever they occur."""
    old_head = prefix + "1.0.weight" in state
    renamed = {}
    for key in [k for k in state if k.startswith(prefix)]:
        local = key[len(prefix) :]
        new = _POOLING_RENAMED.sub(lambda m: f"0.convs.{m[1]}.{int(m[2]) + 1}.", local)
        if old_head:
            for old, to in _HEAD_RENAMED.items():
                if new.startswith(old):
                    new = to + new[len(old) :]
                    break
        if new != local:
            renamed[prefix + new] = state.pop(key)
    state.update(renamed)


def upgrade_state_dict(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``state`` (a DeepLabV3's keys under ``prefix``) with the head's keys that use its old
    names renamed to torchvision's (``classifier.1.0.weight`` -> ``classifier.1.weight``,
    ``classifier.2.weight`` -> ``classifier.4.weight``, ``classifier.0.convs.4.conv.0.weight`` ->
    ``classifier.0.convs.4.1.weight``, ...); a state_dict already in torchvision's names comes
    back with the same keys. Renames in place and returns ``state``."""
    _upgrade_head(state, prefix + "classifier.")
    return state


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    """conv (no bias, size-preserving, dilated) -> BN -> ReLU."""
    padding = dilation * (kernel // 2)
    conv = nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average pool -> 1x1 conv-BN-ReLU -> upsample back.

    forward: (N, cin, H, W) -> (N, cout, H, W).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = super().forward(x)
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
    """ASPP -> 3x3 conv-BN-ReLU -> 1x1 conv to class logits: (N, cin, h, w) -> (N, K, h, w).

    Its layers are torchvision's, flat in one Sequential (0 ASPP, 1 conv, 2 BN, 3 ReLU, 4 conv),
    so its state_dict keys are torchvision's ``DeepLabHead``'s; a state_dict in the names it had
    before (``1.0``, ``1.1``, ``2``, ``0.convs.4.conv.{0,1}``) still loads (``upgrade_state_dict``).
    """

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
            *_conv_bn_relu(channels, channels, 3),
            nn.Conv2d(channels, num_classes, 1),
        )
        self.register_load_state_dict_pre_hook(_upgrade_head_hook)


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

    def upgrade_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``state`` (this module's keys, no prefix) in the current names."""
        return upgrade_state_dict(dict(state))

    def forward(self, x: Tensor) -> Tensor:
        logits = self.classifier(self.backbone(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _upgrade_head_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: rename old keys under ``prefix`` before the submodules load."""
    _upgrade_head(state, prefix)
