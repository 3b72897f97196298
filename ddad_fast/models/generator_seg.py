"""The DCGAN-style generator DFAD used for segmentation (its "GeneratorB", 128x128 for CamVid and
NYUv2): noise -> a (size/16)^2 seed map -> four stride-2 transposed convs -> images."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

# Names this module's keys had before they took GeneratorB's (old key -> new). A state_dict
# written with them still loads: ``upgrade_state_dict`` renames its keys first.
_RENAMED = {"project.weight": "project.1.weight", "project.bias": "project.1.bias"}


def upgrade_state_dict(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``state`` with the keys under ``prefix`` that use the old names renamed to GeneratorB's
    (``project.weight`` -> ``project.1.weight``, ...); a state_dict already in GeneratorB's names
    comes back with the same keys. Renames in place and returns ``state``."""
    for old, new in _RENAMED.items():
        if prefix + old in state:
            state[prefix + new] = state.pop(prefix + old)
    return state


def _up(cin: int, cout: int) -> list[nn.Module]:
    """4x4 stride-2 transposed conv (doubles H and W) -> BN -> LeakyReLU(0.2)."""
    return [
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(0.2, inplace=True),
    ]


def dcgan_init_(module: nn.Module) -> None:
    """DCGAN's initialisation, as GeneratorB applies it: conv, transposed-conv and linear weights
    N(0, 0.02), their biases 0; BatchNorm weights N(1, 0.02), biases 0 (affine-free BNs untouched).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class SegGenerator(nn.Module):
    """linear -> BN -> up(8g->4g) -> up(4g->2g) -> up(2g->g) -> up(g->g) -> conv3x3 -> tanh
    [-> affine-free BN when ``out_bn``].

    forward: z (N, nz) or (N, nz, 1, 1) -> images (N, channels, image_size, image_size). By default
    it is DFAD's GeneratorB: it ends at the tanh (images in [-1, 1], DFAD's CamVid/NYUv2 inputs
    normalised by mean 0.5, std 0.5) and starts from DCGAN's initialisation (``dcgan_init_``).
    ``out_bn=True`` adds an affine-free BatchNorm after the tanh (as GeneratorA has, ``Generator``),
    which makes each channel of a training batch zero-mean, unit-variance, like normalised data,
    whatever the dataset's normalisation; it adds the keys ``main.15.*``. Submodule names, and so
    the state_dict keys, are GeneratorB's (``project.1``, ``main.{0,...,13}``): its checkpoints
    load as they are, and so do ours from before ``project`` took its name (``upgrade_state_dict``).
    """

    def __init__(
        self,
        nz: int = 256,
        ngf: int = 64,
        channels: int = 3,
        image_size: int = 128,
        out_bn: bool = False,
    ):
        super().__init__()
        if image_size < 16 or image_size % 16:
            raise ValueError(
                f"SegGenerator image_size must be a positive multiple of 16, got {image_size}"
            )
        self.nz, self.channels, self.image_size = nz, channels, image_size
        self.init_size = image_size // 16
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(nz, 8 * ngf * self.init_size**2))
        layers = [
            nn.BatchNorm2d(8 * ngf),
            *_up(8 * ngf, 4 * ngf),
            *_up(4 * ngf, 2 * ngf),
            *_up(2 * ngf, ngf),
            *_up(ngf, ngf),
            nn.Conv2d(ngf, channels, 3, padding=1),
            nn.Tanh(),
        ]
        if out_bn:
            layers.append(nn.BatchNorm2d(channels, affine=False))
        self.main = nn.Sequential(*layers)
        dcgan_init_(self)
        self.register_load_state_dict_pre_hook(_upgrade_hook)

    def upgrade_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``state`` (this module's keys, no prefix) in the current names."""
        return upgrade_state_dict(dict(state))

    def forward(self, z: Tensor) -> Tensor:
        """Noise z (N, nz) or (N, nz, 1, 1) -> images (N, channels, image_size, image_size)."""
        x = self.project(z).view(len(z), -1, self.init_size, self.init_size)
        return self.main(x)


def _upgrade_hook(module: nn.Module, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: rename old keys under ``prefix`` before the submodules load."""
    upgrade_state_dict(state, prefix)
