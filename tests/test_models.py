"""Registry models: shapes, published parameter counts, state_dict names, the generator."""

import pytest
import torch
from old_names import (
    assert_old_names_load,
    assert_same_initialisation,
    assert_state_dict_layout,
)
from published_layouts import generator_a
from torch import nn

from ddad_fast.models import Generator, build_model, model_names

# Parameter counts for 10 classes, 3 input channels, as published for the CIFAR versions
# (kuangliu/pytorch-cifar ResNets, DFAD's resnet_8x; WRN of Zagoruyko & Komodakis as in ZSKT/CMI).
PUBLISHED_PARAMS = {
    "resnet18": 11_173_962,
    "resnet18_8x": 11_173_962,
    "resnet34": 21_282_122,
    "resnet34_8x": 21_282_122,
    "wrn40_2": 2_243_546,
    "wrn16_2": 691_674,
    "wrn16_1": 175_066,
    "vgg11_bn": 9_231_114,
}

# The smallest image side each registry name accepts.
MIN_SIZE = {
    "resnet18": 8,
    "resnet18_8x": 8,
    "resnet34": 8,
    "resnet34_8x": 8,
    "wrn40_1": 8,
    "wrn40_2": 8,
    "wrn16_1": 8,
    "wrn16_2": 8,
    "vgg11_bn": 32,
    "smallcnn": 4,
    "tinycnn": 4,
}


# Aliases build the same architecture as their canonical name; forward tests skip them.
ALIASES = {"resnet18_8x": "resnet18", "resnet34_8x": "resnet34"}
CANONICAL = [name for name in sorted(MIN_SIZE) if name not in ALIASES]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def test_registry_lists_every_name_sorted():
    assert model_names() == sorted(MIN_SIZE)


@pytest.mark.parametrize(("name", "count"), PUBLISHED_PARAMS.items())
def test_parameter_counts_match_published_figures(name, count):
    assert _params(build_model(name, 10, 3, 32)) == count


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_aliases_build_the_same_architecture(alias, name):
    assert _shapes(build_model(alias, 10)) == _shapes(build_model(name, 10))


@pytest.mark.parametrize("name", CANONICAL)
@torch.inference_mode()
def test_every_model_maps_images_to_logits_and_has_batchnorm(name):
    model = build_model(name, 7, 3, 32).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", CANONICAL)
@torch.inference_mode()
def test_smallest_supported_size_works_in_one_channel(name):
    size = MIN_SIZE[name]
    model = build_model(name, 10, 1, size).eval()
    assert model(torch.randn(1, 1, size, size)).shape == (1, 10)


@pytest.mark.parametrize("name", model_names())
def test_one_pixel_below_the_smallest_size_is_refused(name):
    size = MIN_SIZE[name]
    with pytest.raises(ValueError, match=f"{name} needs images of at least {size}x{size}"):
        build_model(name, 10, 1, size - 1)


@pytest.mark.parametrize("name", ["smallcnn", "tinycnn"])
@torch.inference_mode()
def test_small_cnns_take_8x8_grey_digits(name):
    model = build_model(name, 10, 1, 8).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@pytest.mark.parametrize("name", CANONICAL)
def test_state_dict_of_one_fresh_model_loads_strictly_into_another(name):
    a, b = build_model(name, 10, 3, 32), build_model(name, 10, 3, 32)
    b.load_state_dict(a.state_dict(), strict=True)
    for key, value in b.state_dict().items():
        assert torch.equal(value, a.state_dict()[key]), key


def test_resnet_state_dict_uses_the_public_cifar_names():
    keys = build_model("resnet18", 10).state_dict().keys()
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.bias",
        "layer2.0.shortcut.0.weight",
        "layer2.0.shortcut.1.running_mean",
        "layer4.1.conv2.weight",
        "linear.weight",
        "linear.bias",
    ):
        assert key in keys
    assert "layer1.0.shortcut.0.weight" not in keys  # identity shortcut when shapes agree
    assert "layer3.5.bn2.weight" in build_model("resnet34", 10).state_dict()


def test_wrn_state_dict_uses_the_public_names():
    keys = build_model("wrn16_1", 10).state_dict().keys()
    for key in (
        "conv1.weight",
        "block1.layer.0.bn1.running_mean",
        "block1.layer.1.conv2.weight",
        "block2.layer.0.convShortcut.weight",
        "block3.layer.0.convShortcut.weight",
        "bn1.weight",
        "fc.weight",
    ):
        assert key in keys
    assert "block1.layer.0.convShortcut.weight" not in keys  # 16 -> 16 channels: identity
    assert "block1.layer.0.convShortcut.weight" in build_model("wrn16_2", 10).state_dict()


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (8, 3), (32, 1), (32, 3)])
def test_generator_output_is_batch_normalised(size, channels):
    torch.manual_seed(0)
    g = Generator(nz=16, ngf=8, channels=channels, image_size=size).train()
    assert (g.nz, g.channels, g.image_size) == (16, channels, size)
    images = g(torch.randn(64, 16))
    assert images.shape == (64, channels, size, size)
    per_channel = images.transpose(0, 1).reshape(channels, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-4
    assert (per_channel.var(dim=1, unbiased=False) - 1).abs().max() < 1e-2


@pytest.mark.parametrize(("nz", "ngf", "nc", "size"), [(256, 64, 3, 32), (16, 8, 1, 8)])
def test_generator_state_dict_keys_are_dfads(nz, ngf, nc, size):
    generator = Generator(nz=nz, ngf=ngf, channels=nc, image_size=size)
    assert_state_dict_layout(generator, generator_a(nz, ngf, nc, size))


class _GeneratorBeforeRename(nn.Module):
    """The Generator as it was before it took DFAD's names (bn0, block1, block2, to_image)."""

    def __init__(self, nz, ngf, channels, image_size):
        super().__init__()
        self.init_size = image_size // 4
        self.l1 = nn.Linear(nz, 2 * ngf * self.init_size**2)
        self.bn0 = nn.BatchNorm2d(2 * ngf)
        self.block1 = nn.Sequential(
            nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1), nn.BatchNorm2d(2 * ngf), nn.LeakyReLU(0.2)
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(2 * ngf, ngf, 3, padding=1), nn.BatchNorm2d(ngf), nn.LeakyReLU(0.2)
        )
        self.to_image = nn.Sequential(
            nn.Conv2d(ngf, channels, 3, padding=1),
            nn.Tanh(),
            nn.BatchNorm2d(channels, affine=False),
        )

    def forward(self, z):
        x = self.l1(z).view(len(z), -1, self.init_size, self.init_size)
        x = self.block1(nn.functional.interpolate(self.bn0(x), scale_factor=2))
        x = self.block2(nn.functional.interpolate(x, scale_factor=2))
        return self.to_image(x)


@pytest.mark.parametrize("loader", ["load_state_dict", "load_state_strict"])
def test_generator_loads_a_state_dict_from_before_the_rename_and_gives_the_same_images(loader):
    torch.manual_seed(0)
    old = _GeneratorBeforeRename(16, 8, 3, 8)
    z = torch.randn(16, 16)
    new = assert_old_names_load(old, lambda: Generator(16, 8, 3, 8), loader, z)
    assert torch.equal(new(z.view(16, 16, 1, 1)), old(z))  # DFAD's (N, nz, 1, 1) noise too


def test_generator_initialisation_is_unchanged_by_the_rename():
    assert_same_initialisation(
        lambda: _GeneratorBeforeRename(16, 8, 3, 8), lambda: Generator(16, 8, 3, 8)
    )


@torch.inference_mode()
def test_generator_in_eval_mode_stays_within_tanh_range():
    g = Generator(nz=16, ngf=8, channels=3, image_size=8).eval()
    images = g(torch.randn(4, 16))
    # running stats start at mean 0, var 1, so eval output is the tanh output scaled by ~1
    assert images.shape == (4, 3, 8, 8)
    assert images.abs().max() <= 1.0 / (1.0 + 1e-5) ** 0.5 + 1e-6


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "resnet99", "num_classes": 10}, "unknown model 'resnet99'; known models: "),
        ({"name": "vgg11_bn", "num_classes": 10, "image_size": 16}, "at least 32x32"),
        ({"name": "resnet18", "num_classes": 1}, "num_classes must be at least 2"),
        ({"name": "resnet18", "num_classes": 10, "in_channels": 0}, "in_channels must be"),
    ],
)
def test_bad_model_requests_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_model(**kwargs)


def test_unknown_name_error_lists_the_known_names():
    with pytest.raises(ValueError) as info:
        build_model("resnet99", 10)
    assert all(name in str(info.value) for name in model_names())


@pytest.mark.parametrize("size", [30, 2, 0, -4])
def test_generator_size_must_be_a_positive_multiple_of_four(size):
    with pytest.raises(ValueError, match="positive multiple of 4"):
        Generator(image_size=size)
