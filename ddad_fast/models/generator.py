"""The DFAD generator ("GeneratorA"): noise -> images whose channels are batch-normalised."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

# Names this module's keys had before it took DFAD's (old key or key prefix -> new). A state_dict
# written with them still loads: ``upgrade_state_dict`` renames its keys first.
_RENAMED = {
    "l1.weight": "l1.0.weight",
    "l1.bias": "l1.0.bias",
    "bn0.": "conv_blocks0.0.",
    "block1.": "conv_blocks1.",
    "block2.": "conv_blocks2.",
    "to_image.0.": "conv_blocks2.3.",
    "to_image.2.": "conv_blocks2.5.",
}


def upgrade_state_dict(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``state`` with the keys under ``prefix`` that use the old submodule names renamed to DFAD's
    (``bn0.weight`` -> ``conv_blocks0.0.weight``, ...); a state_dict already in DFAD's names comes
    back with the same keys. Renames in place and returns ``state``."""
    for key in [k for k in state if k.startswith(prefix)]:
        local = key[len(prefix) :]
        for old, new in _RENAMED.items():
            if local == old or (old.endswith(".") and local.startswith(old)):
                state[prefix + new + local[len(old) :]] = state.pop(key)
                break
    return state


class Generator(nn.Module):
    """linear -> BN -> [upsample x2, conv3x3-BN-LeakyReLU] x2 -> conv3x3 -> tanh -> affine-free BN.

    forward: z (N, nz) or (N, nz, 1, 1) -> images (N, channels, image_size, image_size). The final
    affine-free BatchNorm makes each channel of a training batch zero-mean, unit-variance, like
    normalised data. Submodule names, and so the state_dict keys, are DFAD's GeneratorA's (``l1.0``,
    ``conv_blocks0.0``, ``conv_blocks1.{0,1}``, ``conv_blocks2.{0,1,3,5}``): its checkpoints load
    as they are, and so do ours from before the rename (``upgrade_state_dict``).
    """

    def __init__(self, nz: int = 256, ngf: int = 64, channels: int = 3, image_size: int = 32):
        super().__init__()
        if image_size < 4 or image_size % 4:
            raise ValueError(
                f"Generator image_size must be a positive multiple of 4, got {image_size}"
            )
        self.nz, self.channels, self.image_size = nz, channels, image_size
        self.init_size = image_size // 4
        self.l1 = nn.Sequential(nn.Linear(nz, 2 * ngf * self.init_size**2))
        self.conv_blocks0 = nn.Sequential(nn.BatchNorm2d(2 * ngf))
        self.conv_blocks1 = nn.Sequential(
            nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.conv_blocks2 = nn.Sequential(
            nn.Conv2d(2 * ngf, ngf, 3, padding=1),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ngf, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    def upgrade_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``state`` (this module's keys, no prefix) in the current names."""
        return upgrade_state_dict(dict(state))

    def forward(self, z: Tensor) -> Tensor:
        """Noise z (N, nz) or (N, nz, 1, 1) -> images (N, channels, image_size, image_size)."""
        x = self.l1(z.flatten(1)).view(len(z), -1, self.init_size, self.init_size)
        x = self.conv_blocks1(F.interpolate(self.conv_blocks0(x), scale_factor=2))
        return self.conv_blocks2(F.interpolate(x, scale_factor=2))


def _upgrade_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: rename old keys under ``prefix`` before the submodules load."""
    upgrade_state_dict(state, prefix)
