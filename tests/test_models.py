"""Registry models: shapes, published parameter counts, state_dict names, the generator."""

import pytest
import torch
from torch import nn

from ddad_fast.models import Generator, build_model, model_names

# Parameter counts for 10 classes, 3 input channels, as published for the CIFAR versions
# (kuangliu/pytorch-cifar ResNets, DFAD's resnet_8x; WRN of Zagoruyko & Komodakis as in ZSKT/CMI).
PUBLISHED_PARAMS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "wrn40_2": 2_243_546,
    "wrn16_2": 691_674,
    "wrn16_1": 175_066,
    "vgg11_bn": 9_231_114,
}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "count"), PUBLISHED_PARAMS.items())
def test_parameter_counts_match_published_figures(name, count):
    assert _params(build_model(name, 10, 3, 32)) == count


@pytest.mark.parametrize("name", model_names())
def test_every_model_maps_images_to_logits_and_has_batchnorm(name):
    model = build_model(name, 7, 3, 32).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["smallcnn", "tinycnn", "resnet18", "wrn16_1"])
def test_small_inputs_and_one_channel(name):
    model = build_model(name, 10, 1, 8).eval()
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


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
    a, b = build_model("resnet34", 10), build_model("resnet34_8x", 10)
    b.load_state_dict(a.state_dict(), strict=True)


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (32, 3), (12, 3)])
def test_generator_output_is_batch_normalised(size, channels):
    torch.manual_seed(0)
    g = Generator(nz=16, ngf=8, channels=channels, image_size=size).train()
    images = g(torch.randn(64, 16))
    assert images.shape == (64, channels, size, size)
    per_channel = images.transpose(0, 1).reshape(channels, -1)
    assert per_channel.mean(dim=1).abs().max() < 1e-4
    assert (per_channel.var(dim=1, unbiased=False) - 1).abs().max() < 1e-2


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


def test_generator_size_must_be_a_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        Generator(image_size=30)
