"""The DCGAN-style generator DFAD used for segmentation (its "GeneratorB", 128x128 for CamVid and
NYUv2): noise -> a (size/16)^2 seed map -> four stride-2 transposed convs -> images."""

from __future__ import annotations

from torch import Tensor, nn


def _up(cin: int, cout: int) -> list[nn.Module]:
    """4x4 stride-2 transposed conv (doubles H and W) -> BN -> LeakyReLU(0.2)."""
    return [
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    ]


class SegGenerator(nn.Module):
    """linear -> BN -> up(8g->4g) -> up(4g->2g) -> up(2g->g) -> up(g->g) -> conv3x3 -> tanh ->
    affine-free BN.

    forward: z (N, nz) -> images (N, channels, image_size, image_size). DFAD's GeneratorB ends at
    the tanh; the affine-free BatchNorm after it (as in ``Generator``) makes each channel of a
    training batch zero-mean, unit-variance, like normalised data, so one generator fits any
    dataset's normalisation.
    """

    def __init__(self, nz: int = 256, ngf: int = 64, channels: int = 3, image_size: int = 128):
        super().__init__()
        if image_size < 16 or image_size % 16:
            raise ValueError(
                f"SegGenerator image_size must be a positive multiple of 16, got {image_size}"
            )
        self.nz, self.channels, self.image_size = nz, channels, image_size
        self.init_size = image_size // 16
        self.project = nn.Linear(nz, 8 * ngf * self.init_size**2)
        self.main = nn.Sequential(
            nn.BatchNorm2d(8 * ngf),
            *_up(8 * ngf, 4 * ngf),
            *_up(4 * ngf, 2 * ngf),
            *_up(2 * ngf, ngf),
            *_up(ngf, ngf),
            nn.Conv2d(ngf, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, z: Tensor) -> Tensor:
        """Noise z (N, nz) -> images (N, channels, image_size, image_size)."""
        x = self.project(z).view(len(z), -1, self.init_size, self.init_size)
        return self.main(x)
