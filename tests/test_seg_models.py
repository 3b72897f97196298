"""Segmentation models: output shapes, output strides, dilations, parameter counts against
torchvision's published figures, the segmentation generator, the registry."""

import pytest
import torch
from old_names import (
    assert_old_names_load,
    assert_same_initialisation,
    assert_state_dict_layout,
)
from published_layouts import deeplab_head, generator_b
from torch import nn

from ddad_fast.amp import output_layer
from ddad_fast.errors import ConfigError
from ddad_fast.models import (
    SegGenerator,
    build_model,
    model_names,
    model_task,
    seg_model_names,
)
from ddad_fast.models.generator_seg import dcgan_init_
from ddad_fast.models.mobilenetv2 import MobileNetV2Backbone
from ddad_fast.models.resnet_dilated import DilatedResNet


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _head_params(cin: int, classes: int, channels: int = 256, rates: int = 3) -> int:
    """torchvision's DeepLabHead(cin, classes), counted from its layers: ASPP (a 1x1 branch,
    ``rates`` 3x3 branches, the pooling branch's 1x1, each conv without bias + BN; the 1x1
    projection + BN), then 3x3 conv + BN and the 1x1 classifier with bias."""
    bn = 2 * channels
    aspp = (cin * channels + bn) * 2 + (9 * cin * channels + bn) * rates
    aspp += (rates + 2) * channels * channels + bn
    return aspp + 9 * channels * channels + bn + channels * classes + classes


# torchvision publishes num_params 42,004,074 for deeplabv3_resnet50 (21 classes, with its
# auxiliary FCNHead on layer3) in torchvision/models/segmentation/deeplabv3.py; we build no
# auxiliary head, so we subtract FCNHead(1024, 21) = 3x3 conv 1024->256 + BN + 1x1 conv 256->21.
TORCHVISION_DEEPLABV3_RESNET50 = 42_004_074
AUX_HEAD = 9 * 1024 * 256 + 2 * 256 + 256 * 21 + 21  # 2,365,205
# torchvision publishes num_params 3,504,872 for mobilenet_v2 (1000 classes) in
# torchvision/models/mobilenetv2.py. DFAD's backbone is its ``features`` without the last 1x1
# conv-BN-ReLU6 (320 -> 1280) and without the classifier (dropout, linear 1280 -> 1000).
TORCHVISION_MOBILENET_V2 = 3_504_872
MOBILENET_V2_BACKBONE = TORCHVISION_MOBILENET_V2 - (1280 * 1000 + 1000) - (320 * 1280 + 2 * 1280)


def test_deeplabv3_resnet50_has_torchvisions_parameter_count():
    with torch.device("meta"):  # 40 M parameters: counted, never allocated
        model = build_model("deeplabv3_resnet50", 21, 3, 520)
    assert _params(model) == TORCHVISION_DEEPLABV3_RESNET50 - AUX_HEAD == 39_638_869
    assert _params(model.classifier) == _head_params(2048, 21)


def test_deeplabv3_mobilenetv2_is_torchvisions_backbone_plus_the_same_head():
    with torch.device("meta"):
        model = build_model("deeplabv3_mobilenetv2", 21, 3, 512)
    assert _params(model.backbone) == MOBILENET_V2_BACKBONE == 1_811_712
    assert _params(model.classifier) == _head_params(320, 21)
    assert _params(model) == 5_113_877


SMALL = ["deeplabv3_resnet_small", "deeplabv3_mobilenetv2_small", "deeplabv3_mobilenetv2_tiny"]


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize(("h", "w"), [(32, 32), (24, 40)])
def test_small_models_give_logit_maps_of_the_input_size(name, h, w):
    model = build_model(name, 11, 1, 32).eval()
    assert model(torch.randn(2, 1, h, w)).shape == (2, 11, h, w)


def test_full_width_models_give_logit_maps_of_the_input_size():
    torch.manual_seed(0)
    for name in ("deeplabv3_resnet50", "deeplabv3_mobilenetv2"):
        model = build_model(name, 13, 3, 32).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 32, 32)).shape == (1, 13, 32, 32)


@pytest.mark.parametrize(
    ("name", "classes", "channels", "rates"),
    [("deeplabv3_resnet50", 21, 256, 3), ("deeplabv3_mobilenetv2_tiny", 5, 32, 3)],
)
def test_deeplab_head_state_dict_keys_are_torchvisions(name, classes, channels, rates):
    with torch.device("meta"):
        model = build_model(name, classes, 3, 32)
    state = {
        k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("classifier.")
    }
    expected = deeplab_head(model.backbone.out_channels, classes, channels, rates)
    assert list(state) == list(expected)
    assert state == expected
    assert output_layer(model, dense=True) is model.classifier[4]


class _OldPooling(nn.Module):
    """The ASPP pooling branch as it was before the rename: conv-BN-ReLU in ``conv``."""

    def __init__(self, new):
        super().__init__()
        self.conv = nn.Sequential(*list(new)[1:])

    def forward(self, x):
        pooled = self.conv(nn.functional.adaptive_avg_pool2d(x, 1))
        return nn.functional.interpolate(
            pooled, size=x.shape[-2:], mode="bilinear", align_corners=False
        )


def _deeplab_before_rename(classes=5):
    """deeplabv3_mobilenetv2_tiny with the head's layers in their old places (3x3 conv-BN-ReLU in
    a Sequential at ``classifier.1``, the classifier at ``classifier.2``, the pooling branch's
    conv-BN-ReLU under ``conv``), from the same draws as a new one."""
    model = build_model("deeplabv3_mobilenetv2_tiny", classes, 3, 32)
    head = model.classifier
    head[0].convs[-1] = _OldPooling(head[0].convs[-1])
    model.classifier = nn.Sequential(head[0], nn.Sequential(*list(head)[1:4]), head[4])
    return model


@pytest.mark.parametrize("loader", ["load_state_dict", "load_state_strict"])
def test_deeplab_loads_a_state_dict_from_before_the_rename_and_gives_the_same_logits(loader):
    torch.manual_seed(0)
    old = _deeplab_before_rename()
    assert {"classifier.1.0.weight", "classifier.0.convs.4.conv.0.weight"} <= set(old.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert_old_names_load(
        old, lambda: build_model("deeplabv3_mobilenetv2_tiny", 5, 3, 32), loader, x
    )


def test_deeplab_initialisation_is_unchanged_by_the_rename():
    assert_same_initialisation(
        lambda: _deeplab_before_rename(),
        lambda: build_model("deeplabv3_mobilenetv2_tiny", 5, 3, 32),
    )


@pytest.mark.parametrize("stride", [4, 8, 16])
def test_backbones_stop_at_the_output_stride(stride):
    x = torch.randn(1, 3, 64, 64)
    resnet = DilatedResNet(3, (1, 1, 1, 1), 8, stride).eval()
    mobilenet = MobileNetV2Backbone(3, 0.25, stride).eval()
    assert resnet(x).shape == (1, 32 * 8, 64 // stride, 64 // stride)
    assert mobilenet(x).shape == (1, mobilenet.out_channels, 64 // stride, 64 // stride)


def test_dilation_replaces_stride_as_torchvision_does():
    # ResNet-50 at output stride 8: layer3's first block keeps dilation 1, the rest 2; layer4's
    # first block 2, the rest 4; no 3x3 conv after layer2 has stride 2.
    with torch.device("meta"):
        resnet = DilatedResNet(3, (3, 4, 6, 3), 64, 8)
    assert [b.conv2.dilation[0] for b in resnet.layer3] == [1, 2, 2, 2, 2, 2]
    assert [b.conv2.dilation[0] for b in resnet.layer4] == [2, 4, 4]
    assert all(b.conv2.stride == (1, 1) for b in [*resnet.layer3, *resnet.layer4])
    assert resnet.layer2[0].conv2.stride == (2, 2)


def test_max_blocks_caps_each_stage_of_the_mobilenet():
    backbone = MobileNetV2Backbone(1, 1.0, 8, max_blocks=1)
    assert len(backbone.features) == 1 + 7  # the stem and one block per stage
    assert backbone.out_channels == 320


def test_mobilenet_keeps_torchvisions_channels():
    with torch.device("meta"):
        backbone = MobileNetV2Backbone(3, 1.0, 8)
    outs = [block.conv[-1].num_features for block in backbone.features[1:]]
    assert outs == [16, 24, 24, 32, 32, 32] + [64] * 4 + [96] * 3 + [160] * 3 + [320]


@pytest.mark.parametrize("size", [32, 128])
def test_seg_generator_makes_images_of_its_size(size):
    g = SegGenerator(nz=8, ngf=4, channels=3, image_size=size)
    assert g(torch.randn(2, 8)).shape == (2, 3, size, size)


def test_seg_generator_is_generator_b_by_default_ending_at_the_tanh():
    torch.manual_seed(0)
    g = SegGenerator(nz=8, ngf=4, channels=3, image_size=32).train()
    assert isinstance(g.main[-1], nn.Tanh) and len(g.main) == 15
    assert not any(k.startswith("main.15.") for k in g.state_dict())
    assert g(torch.randn(4, 8)).abs().max() <= 1
    assert g(torch.randn(4, 8, 1, 1)).shape == (4, 3, 32, 32)  # DFAD's noise shape too


def test_seg_generator_starts_from_dcgan_initialisation():
    torch.manual_seed(0)
    g = SegGenerator(nz=64, ngf=32, channels=3, image_size=32)
    convs = [m for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 6 and len(bns) == 5
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.mean()) < 1e-3 and abs(weights.std() - 0.02) < 1e-3
    assert all(m.bias is None or not m.bias.any() for m in convs)
    gammas = torch.cat([m.weight for m in bns])
    assert abs(gammas.mean() - 1) < 5e-3 and abs(gammas.std() - 0.02) < 5e-3
    assert not torch.cat([m.bias for m in bns]).any()


def test_seg_generator_out_bn_adds_an_affine_free_batchnorm_after_the_tanh():
    torch.manual_seed(0)
    g = SegGenerator(nz=8, ngf=4, channels=3, image_size=32, out_bn=True).train()
    last = g.main[-1]
    assert isinstance(g.main[-2], nn.Tanh) and isinstance(last, nn.BatchNorm2d)
    assert not last.affine and "main.15.running_mean" in g.state_dict()
    images = g(torch.randn(64, 8)).transpose(0, 1).reshape(3, -1)
    assert images.mean(dim=1).abs().max() < 1e-4
    assert (images.var(dim=1, unbiased=False) - 1).abs().max() < 1e-2


def test_seg_generator_refuses_a_size_not_a_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        SegGenerator(8, 4, 3, 40)


@pytest.mark.parametrize(("nz", "ngf", "nc", "size"), [(256, 64, 3, 128), (8, 4, 1, 32)])
def test_seg_generator_state_dict_keys_are_generator_bs(nz, ngf, nc, size):
    generator = SegGenerator(nz=nz, ngf=ngf, channels=nc, image_size=size)
    assert_state_dict_layout(generator, generator_b(nz, ngf, nc, size))


class _SegGeneratorBeforeRename(nn.Module):
    """SegGenerator as it was before ``project`` took GeneratorB's name (a bare Linear, keys
    ``project.weight``, ``project.bias``), GeneratorB's layers and initialisation otherwise."""

    def __init__(self, nz, ngf, channels, image_size, out_bn=False):
        super().__init__()
        self.init_size = image_size // 16
        self.project = nn.Linear(nz, 8 * ngf * self.init_size**2)
        layers = [nn.BatchNorm2d(8 * ngf)]
        for cin, cout in [(8 * ngf, 4 * ngf), (4 * ngf, 2 * ngf), (2 * ngf, ngf), (ngf, ngf)]:
            layers += [
                nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.LeakyReLU(0.2),
            ]
        layers += [nn.Conv2d(ngf, channels, 3, padding=1), nn.Tanh()]
        if out_bn:
            layers.append(nn.BatchNorm2d(channels, affine=False))
        self.main = nn.Sequential(*layers)
        dcgan_init_(self)

    def forward(self, z):
        x = self.project(z.flatten(1)).view(len(z), -1, self.init_size, self.init_size)
        return self.main(x)


@pytest.mark.parametrize("loader", ["load_state_dict", "load_state_strict"])
@pytest.mark.parametrize("out_bn", [False, True])
def test_seg_generator_loads_a_state_dict_from_before_the_rename_and_gives_the_same_images(
    loader, out_bn
):
    torch.manual_seed(0)
    old = _SegGeneratorBeforeRename(8, 4, 3, 32, out_bn)
    z = torch.randn(4, 8)
    new = assert_old_names_load(old, lambda: SegGenerator(8, 4, 3, 32, out_bn=out_bn), loader, z)
    assert torch.equal(new(z.view(4, 8, 1, 1)), old(z))  # DFAD's (N, nz, 1, 1) noise too


def test_seg_generator_initialisation_is_unchanged_by_the_rename():
    assert_same_initialisation(
        lambda: _SegGeneratorBeforeRename(8, 4, 3, 32), lambda: SegGenerator(8, 4, 3, 32)
    )


def test_registry_keeps_segmentation_models_apart_from_classifiers():
    assert seg_model_names() == [
        "deeplabv3_mobilenetv2",
        "deeplabv3_mobilenetv2_dfad",
        "deeplabv3_mobilenetv2_small",
        "deeplabv3_mobilenetv2_tiny",
        "deeplabv3_resnet50",
        "deeplabv3_resnet50_dfad",
        "deeplabv3_resnet_small",
    ]
    assert not set(seg_model_names()) & set(model_names())
    assert model_task("deeplabv3_resnet50") == "seg" and model_task("resnet18") == "cls"
    with pytest.raises(ConfigError, match="unknown model 'deeplab'"):
        model_task("deeplab")
    with pytest.raises(ConfigError, match="at least 16x16"):
        build_model("deeplabv3_resnet_small", 11, 1, 8)
