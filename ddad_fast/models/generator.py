"""The DFAD generator ("GeneratorA"): noise -> images whose channels are batch-normalised."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Generator(nn.Module):
    """linear -> BN -> [upsample x2, conv3x3-BN-LeakyReLU] x2 -> conv3x3 -> tanh -> affine-free BN.

    forward: z (N, nz) -> images (N, channels, image_size, image_size). The final affine-free
    BatchNorm makes each channel of a training batch zero-mean, unit-variance, like normalised data.
    """

    def __init__(self, nz: int = 256, ngf: int = 64, channels: int = 3, image_size: int = 32):
        super().__init__()
        if image_size < 4 or image_size % 4:
            raise ValueError(
                f"Generator image_size must be a positive multiple of 4, got {image_size}"
            )
        self.nz, self.channels, self.image_size = nz, channels, image_size
        self.init_size = image_size // 4
        self.l1 = nn.Linear(nz, 2 * ngf * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(2 * ngf)
        self.block1 = nn.Sequential(
            nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1),
            nn.BatchNorm2d(2 * ngf),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(2 * ngf, ngf, 3, padding=1),
            nn.BatchNorm2d(ngf),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.to_image = nn.Sequential(
            nn.Conv2d(ngf, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Noise z (N, nz) -> images (N, channels, image_size, image_size)."""
        x = self.l1(z).view(len(z), -1, self.init_size, self.init_size)
        x = self.block1(F.interpolate(self.bn0(x), scale_factor=2))
        x = self.block2(F.interpolate(x, scale_factor=2))
        return self.to_image(x)
