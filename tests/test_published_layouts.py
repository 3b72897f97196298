"""Published checkpoints load strictly into our models and give the outputs the public code gives.

For each published layout (``published_layouts.py``) a state_dict of random values in that layout
is saved as its source saves it, loaded as a user loads it (``load_model``; ``load_state_strict``
for the generators) and run beside a reference: the public model's forward, written here from its
source as functions of the published state_dict's keys. Both run in float64 on the same input.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from old_names import assert_state_dict_layout
from published_layouts import (
    DFAD_MOBILENETV2_SETTING,
    Layout,
    cifar_resnet,
    deeplab_head,
    dfad_mobilenetv2_backbone,
    fcn_aux_head,
    generator_a,
    generator_b,
    resnet50_backbone,
    wide_resnet,
)
from torch import Tensor

from ddad_fast.checkpoint import load_checkpoint, load_state_strict
from ddad_fast.errors import CheckpointError
from ddad_fast.model_io import load_model
from ddad_fast.models import Generator, SegGenerator, model_task
from ddad_fast.models.published_names import in_our_names

State = dict[str, Tensor]

TORCHVISION_RATES = (12, 24, 36)
DFAD_RATES = (12, 24, 32)  # DFAD's DeepLabHead: ASPP(in_channels, [12, 24, 32])
# 304 rows make stride-8 feature maps of 38 rows, where every atrous rate reaches inside the map
# (a rate at least the map's size sees only zero padding); 16 columns keep ResNet-50 cheap.
SEG_INPUT = (1, 3, 304, 16)
# torchvision's ResNet stages at output stride 8: (stage, its first block's stride and dilation,
# the other blocks' dilation).
DILATED_RESNET_STAGES = ((1, 1, 1, 1), (2, 2, 1, 1), (3, 1, 1, 2), (4, 1, 2, 4))


def random_state(layout: Layout, seed: int = 0) -> State:
    """Random float32 values in ``layout``: weights scaled by 1 / sqrt(fan-in), BN scales near 1,
    biases and running means near 0, running variances in [0.5, 1.5]; batch counters 7."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:
            state[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            scale = 1.0 if key.endswith(".weight") else 0.0
            state[key] = scale + 0.1 * torch.randn(shape, generator=g)
    return state


def _float64(state: State) -> State:
    return {k: v.double() if v.is_floating_point() else v for k, v in state.items()}


# --- the references: the public forwards, as functions of the published keys ---------------------


def _bn(s: State, name: str, x: Tensor) -> Tensor:
    """BatchNorm2d in eval mode (an affine-free one has no weight or bias)."""
    mean, var = s[f"{name}.running_mean"], s[f"{name}.running_var"]
    weight, bias = s.get(f"{name}.weight"), s.get(f"{name}.bias")
    return F.batch_norm(x, mean, var, weight, bias, training=False, eps=1e-5)


def _conv(s: State, name: str, x: Tensor, **kwargs: Any) -> Tensor:
    return F.conv2d(x, s[f"{name}.weight"], s.get(f"{name}.bias"), **kwargs)


def _conv_bn(s: State, conv: str, bn: str, x: Tensor, **kwargs: Any) -> Tensor:
    return _bn(s, bn, _conv(s, conv, x, **kwargs))


def _linear(s: State, name: str, x: Tensor) -> Tensor:
    return F.linear(x, s[f"{name}.weight"], s[f"{name}.bias"])


def _count(s: State, stage: str) -> int:
    """How many blocks the Sequential ``stage`` holds."""
    return 1 + max(int(k[len(stage) + 1 :].split(".")[0]) for k in s if k.startswith(f"{stage}."))


def ref_cifar_resnet(s: State, x: Tensor, pool: Callable[[Tensor], Tensor]) -> Tensor:
    """DAFL's CIFAR ResNet: relu(bn1(conv1)), BasicBlocks relu(bn2(conv2(relu(bn1(conv1)))) +
    shortcut), ``pool``, linear. DFAD and DeepInversion pool by avg_pool2d(out, 4), CMI by
    adaptive_avg_pool2d(out, 1): the same on 32x32 inputs (4x4 maps)."""
    out = F.relu(_conv_bn(s, "conv1", "bn1", x, padding=1))
    for i in (1, 2, 3, 4):
        for j in range(_count(s, f"layer{i}")):
            block, stride = f"layer{i}.{j}", 2 if i > 1 and j == 0 else 1
            o = _conv_bn(s, f"{block}.conv1", f"{block}.bn1", out, stride=stride, padding=1)
            o = _conv_bn(s, f"{block}.conv2", f"{block}.bn2", F.relu(o), padding=1)
            if f"{block}.shortcut.0.weight" in s:
                out = _conv_bn(s, f"{block}.shortcut.0", f"{block}.shortcut.1", out, stride=stride)
            out = F.relu(o + out)
    return _linear(s, "linear", pool(out).flatten(1))


def _dfad_pool(out: Tensor) -> Tensor:
    return F.avg_pool2d(out, 4)


def _cmi_pool(out: Tensor) -> Tensor:
    return F.adaptive_avg_pool2d(out, 1)


def ref_wide_resnet(s: State, x: Tensor) -> Tensor:
    """ZSKT's WRN: conv1; pre-activation blocks conv2(relu(bn2(conv1(relu(bn1(x)))))) plus x, or
    plus convShortcut(relu(bn1(x))) where the width changes; relu(bn1), global pool, fc."""
    out = _conv(s, "conv1", x, padding=1)
    for b in (1, 2, 3):
        for j in range(_count(s, f"block{b}.layer")):
            block, stride = f"block{b}.layer.{j}", 2 if b > 1 and j == 0 else 1
            pre = F.relu(_bn(s, f"{block}.bn1", out))
            o = _conv(s, f"{block}.conv1", pre, stride=stride, padding=1)
            o = _conv(s, f"{block}.conv2", F.relu(_bn(s, f"{block}.bn2", o)), padding=1)
            if f"{block}.convShortcut.weight" in s:
                out = _conv(s, f"{block}.convShortcut", pre, stride=stride)
            out = out + o
    out = F.relu(_bn(s, "bn1", out))
    return _linear(s, "fc", F.adaptive_avg_pool2d(out, 1).flatten(1))


def ref_generator_a(s: State, z: Tensor) -> Tensor:
    """GeneratorA: linear to a (2 ngf, init, init) map, BN, [nearest x2, conv-BN-LeakyReLU(0.2)] x2
    (the second conv-BN-LeakyReLU then conv3x3), tanh, affine-free BN."""
    x = _linear(s, "l1.0", z.flatten(1))
    channels = s["conv_blocks0.0.running_mean"].numel()
    init = math.isqrt(x.shape[1] // channels)
    x = _bn(s, "conv_blocks0.0", x.view(len(z), channels, init, init))
    x = F.interpolate(x, scale_factor=2)
    x = F.leaky_relu(_conv_bn(s, "conv_blocks1.0", "conv_blocks1.1", x, padding=1), 0.2)
    x = F.interpolate(x, scale_factor=2)
    x = F.leaky_relu(_conv_bn(s, "conv_blocks2.0", "conv_blocks2.1", x, padding=1), 0.2)
    return _bn(s, "conv_blocks2.5", torch.tanh(_conv(s, "conv_blocks2.3", x, padding=1)))


def ref_generator_b(s: State, z: Tensor) -> Tensor:
    """GeneratorB: linear to an (8 ngf, init, init) map, BN, [transposed conv 4x4 stride 2
    padding 1, BN, LeakyReLU(0.2)] x4, conv3x3, tanh."""
    x = _linear(s, "project.1", z.flatten(1))
    channels = s["main.0.running_mean"].numel()
    init = math.isqrt(x.shape[1] // channels)
    x = _bn(s, "main.0", x.view(len(z), channels, init, init))
    for i in (1, 4, 7, 10):
        x = F.conv_transpose2d(x, s[f"main.{i}.weight"], stride=2, padding=1)
        x = F.leaky_relu(_bn(s, f"main.{i + 1}", x), 0.2)
    return torch.tanh(_conv(s, "main.13", x, padding=1))


def ref_resnet50_backbone(s: State, x: Tensor) -> Tensor:
    """torchvision's resnet50(replace_stride_with_dilation=[False, True, True]) up to layer4:
    layer3 and layer4 trade their stride 2 for dilations 2 and 4, their first blocks keeping the
    dilation before (1 and 2)."""
    x = F.relu(_conv_bn(s, "backbone.conv1", "backbone.bn1", x, stride=2, padding=3))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for i, first_stride, first_dilation, dilation in DILATED_RESNET_STAGES:
        for j in range(_count(s, f"backbone.layer{i}")):
            block = f"backbone.layer{i}.{j}"
            stride, d = (first_stride, first_dilation) if j == 0 else (1, dilation)
            o = F.relu(_conv_bn(s, f"{block}.conv1", f"{block}.bn1", x))
            o = _conv_bn(
                s, f"{block}.conv2", f"{block}.bn2", o, stride=stride, padding=d, dilation=d
            )
            o = _conv_bn(s, f"{block}.conv3", f"{block}.bn3", F.relu(o))
            if f"{block}.downsample.0.weight" in s:
                x = _conv_bn(s, f"{block}.downsample.0", f"{block}.downsample.1", x, stride=stride)
            x = F.relu(o + x)
    return x


def ref_dfad_mobilenetv2(s: State, x: Tensor) -> Tensor:
    """DFAD's MobileNetV2 at output stride 8: once the stride reaches 8, a stage runs at the rate
    so far and the rate grows by the stage's stride; each block pads its input by its dilation
    (fixed_padding) and convolves without padding; a residual when stride 1 and same channels."""
    stem = "backbone.features.0"
    x = F.relu6(_conv_bn(s, f"{stem}.0", f"{stem}.1", x, stride=2, padding=1))
    current_stride, rate, index = 2, 1, 1
    for t, c, n, s_stage in DFAD_MOBILENETV2_SETTING:
        if current_stride == 8:
            stage_stride, dilation, rate = 1, rate, rate * s_stage
        else:
            stage_stride, dilation = s_stage, 1
            current_stride *= s_stage
        for i in range(n):
            block, stride = f"backbone.features.{index}.conv", stage_stride if i == 0 else 1
            h, k = F.pad(x, (dilation,) * 4), 0  # fixed_padding, then unpadded convs
            if t != 1:
                h, k = F.relu6(_conv_bn(s, f"{block}.0", f"{block}.1", h)), 3
            dw, bn = f"{block}.{k}", f"{block}.{k + 1}"
            h = _conv_bn(s, dw, bn, h, stride=stride, dilation=dilation, groups=h.shape[1])
            h = _conv_bn(s, f"{block}.{k + 3}", f"{block}.{k + 4}", F.relu6(h))
            x = x + h if stride == 1 and x.shape[1] == c else h
            index += 1
    return x


def ref_deeplab(
    s: State, x: Tensor, backbone: Callable[[State, Tensor], Tensor], rates: tuple[int, ...]
) -> Tensor:
    """DeepLabV3: backbone, then DeepLabHead (ASPP: a 1x1 branch, a 3x3 branch per rate, the
    image-pooling branch; 1x1 projection; 3x3 conv-BN-ReLU; 1x1 classifier), logits upsampled
    bilinearly to the input size."""
    f = backbone(s, x)
    head = "classifier.0.convs"
    branches = [F.relu(_conv_bn(s, f"{head}.0.0", f"{head}.0.1", f))]
    for i, r in enumerate(rates, start=1):
        branches.append(
            F.relu(_conv_bn(s, f"{head}.{i}.0", f"{head}.{i}.1", f, padding=r, dilation=r))
        )
    pool = f"{head}.{len(rates) + 1}"
    pooled = F.relu(_conv_bn(s, f"{pool}.1", f"{pool}.2", F.adaptive_avg_pool2d(f, 1)))
    branches.append(F.interpolate(pooled, size=f.shape[-2:], mode="bilinear", align_corners=False))
    project = "classifier.0.project"
    y = F.relu(_conv_bn(s, f"{project}.0", f"{project}.1", torch.cat(branches, dim=1)))
    y = F.relu(_conv_bn(s, "classifier.1", "classifier.2", y, padding=1))
    y = _conv(s, "classifier.4", y)
    return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


# --- the published checkpoints ---------------------------------------------------------------


def _cmi_file(state: State) -> dict[str, Any]:
    """CMI / Fast-Datafree's checkpoints/pretrained/*.pth: the weights under ``state_dict``."""
    return {"state_dict": state, "epoch": 200, "best_acc1": 94.87}


def _data_parallel_cmi_file(state: State) -> dict[str, Any]:
    return _cmi_file({f"module.{k}": v for k, v in state.items()})


@dataclass(frozen=True)
class Published:
    """A published model: our registry name for it, its class count, its layout, its reference
    forward, an input, and how its source's files hold the state_dict."""

    name: str
    classes: int
    layout: Callable[[], Layout]
    reference: Callable[[State, Tensor], Tensor]
    input_shape: tuple[int, ...]
    saved: Callable[[State], Any] = lambda state: state


_ref_dfad_resnet = partial(ref_cifar_resnet, pool=_dfad_pool)
_ref_cmi_resnet = partial(ref_cifar_resnet, pool=_cmi_pool)

PUBLISHED = {
    "dfad-resnet34_8x": Published(
        "resnet34_8x", 10, partial(cifar_resnet, (3, 4, 6, 3), 10), _ref_dfad_resnet, (2, 3, 32, 32)
    ),
    "dfad-resnet18_8x": Published(
        "resnet18_8x",
        100,
        partial(cifar_resnet, (2, 2, 2, 2), 100),
        _ref_dfad_resnet,
        (2, 3, 32, 32),
    ),
    "cmi-resnet34": Published(
        "resnet34",
        10,
        partial(cifar_resnet, (3, 4, 6, 3), 10),
        _ref_cmi_resnet,
        (2, 3, 40, 40),
        _cmi_file,
    ),
    "cmi-resnet18": Published(
        "resnet18",
        100,
        partial(cifar_resnet, (2, 2, 2, 2), 100),
        _ref_cmi_resnet,
        (2, 3, 32, 32),
        _cmi_file,
    ),
    "cmi-wrn40_2": Published(
        "wrn40_2", 10, partial(wide_resnet, 40, 2, 10), ref_wide_resnet, (2, 3, 32, 32), _cmi_file
    ),
    "cmi-wrn40_1": Published(
        "wrn40_1", 100, partial(wide_resnet, 40, 1, 100), ref_wide_resnet, (2, 3, 32, 32), _cmi_file
    ),
    "cmi-wrn16_2": Published(
        "wrn16_2",
        10,
        partial(wide_resnet, 16, 2, 10),
        ref_wide_resnet,
        (2, 3, 32, 32),
        _data_parallel_cmi_file,
    ),
    "cmi-wrn16_1": Published(
        "wrn16_1", 100, partial(wide_resnet, 16, 1, 100), ref_wide_resnet, (2, 3, 40, 40), _cmi_file
    ),
    "deepinversion-resnet34": Published(
        "resnet34", 10, partial(cifar_resnet, (3, 4, 6, 3), 10), _ref_dfad_resnet, (2, 3, 32, 32)
    ),
    "dfad-deeplabv3_resnet50": Published(
        "deeplabv3_resnet50_dfad",
        11,
        lambda: resnet50_backbone() | deeplab_head(2048, 11),
        partial(ref_deeplab, backbone=ref_resnet50_backbone, rates=DFAD_RATES),
        SEG_INPUT,
    ),
    "dfad-deeplabv3_mobilenet": Published(
        "deeplabv3_mobilenetv2_dfad",
        11,
        lambda: dfad_mobilenetv2_backbone() | deeplab_head(320, 11),
        partial(ref_deeplab, backbone=ref_dfad_mobilenetv2, rates=DFAD_RATES),
        (2, 3, 304, 40),
    ),
    "torchvision-deeplabv3_resnet50": Published(
        "deeplabv3_resnet50",
        21,
        lambda: resnet50_backbone() | deeplab_head(2048, 21) | fcn_aux_head(21),
        partial(ref_deeplab, backbone=ref_resnet50_backbone, rates=TORCHVISION_RATES),
        SEG_INPUT,
    ),
}


def _load_published(published: Published, state: State, path, name: str | None = None):
    """``state`` saved at ``path`` as its source saves it and loaded by ``load_model`` as ``name``
    (by default our name for the published model): the model, in float64 and eval mode."""
    torch.save(published.saved(state), path)
    name = name or published.name
    model, _ = load_model(path, name, published.classes, 3, 32, model_task(name))
    return model.double()


def _input(shape: tuple[int, ...]) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("source", PUBLISHED)
@torch.no_grad()
def test_published_state_dict_loads_strictly_and_gives_the_reference_outputs(source, tmp_path):
    published = PUBLISHED[source]
    layout = published.layout()
    state = random_state(layout)
    model = _load_published(published, state, tmp_path / "published.pt")
    assert_state_dict_layout(model, in_our_names(layout))  # its keys, in its order, its shapes
    x = _input(published.input_shape)
    expected = published.reference(_float64(state), x)
    assert expected.std() > 0.1  # the random weights give outputs that vary
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize(
    ("make", "layout", "reference"),
    [
        # DFAD_cifar.py: GeneratorA(nz=256, nc=3, img_size=32); DFAD_camvid_deeplab.py:
        # GeneratorB(nz=256, img_size=128)
        (lambda: Generator(256, 64, 3, 32), generator_a(256, 64, 3, 32), ref_generator_a),
        (lambda: SegGenerator(256, 64, 3, 128), generator_b(256, 64, 3, 128), ref_generator_b),
    ],
    ids=["dfad-generator_a", "dfad-generator_b"],
)
@torch.no_grad()
def test_dfad_generators_load_strictly_and_give_the_reference_images(
    make, layout, reference, tmp_path
):
    state = random_state(layout)
    torch.save(state, tmp_path / "generator.pt")
    generator = make()
    load_state_strict(generator, load_checkpoint(tmp_path / "generator.pt"), "generator.pt")
    z = _input((4, 256, 1, 1))  # DFAD's noise: (N, nz, 1, 1)
    expected = reference(_float64(state), z)
    assert expected.std() > 0.1
    torch.testing.assert_close(generator.double().eval()(z), expected)


@torch.no_grad()
def test_dfads_teacher_loads_into_deeplabv3_resnet50_but_gives_other_logits_there(tmp_path):
    # The same layers and shapes as torchvision's, so the file loads strictly; the third atrous
    # rate (36 there, 32 in DFAD) changes the logits: DFAD's teacher is deeplabv3_resnet50_dfad.
    published = PUBLISHED["dfad-deeplabv3_resnet50"]
    state = random_state(published.layout())
    model = _load_published(published, state, tmp_path / "teacher.pt", "deeplabv3_resnet50")
    x = _input(published.input_shape)
    difference = (model(x) - published.reference(_float64(state), x)).abs().max()
    assert difference > 1e-3


def test_dfads_student_does_not_load_into_the_torchvision_style_mobilenet(tmp_path):
    published = PUBLISHED["dfad-deeplabv3_mobilenet"]
    with pytest.raises(
        CheckpointError, match=r"missing: backbone\.features\.1\.conv\.0\.0\.weight"
    ):
        _load_published(
            published, random_state(published.layout()), tmp_path / "s.pt", "deeplabv3_mobilenetv2"
        )
