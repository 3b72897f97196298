"""The state_dict layouts (key -> shape, in the order the public code registers its modules) of
the published models whose checkpoints our models load, written out from the public sources:

- DAFL's CIFAR ResNet as DFAD (network/resnet_8x.py), CMI and Fast-Datafree
  (datafree/models/classifiers/resnet.py) and DeepInversion (cifar10/resnet_cifar.py) copy it;
- the CIFAR Wide-ResNet of ZSKT as CMI and Fast-Datafree copy it (classifiers/wresnet.py);
- DFAD's GeneratorA and GeneratorB (network/gan.py);
- torchvision's ResNet-50 backbone, DeepLabHead and auxiliary FCNHead (models/resnet.py,
  models/segmentation/deeplabv3.py, fcn.py), which DFAD's DeepLabV3 teacher uses too
  (network/segmentation/deeplabv3.py, _deeplab.py);
- DFAD's MobileNetV2 backbone (network/segmentation/mobilenet.py).
"""

Layout = dict[str, tuple[int, ...]]

# DFAD's MobileNetV2 stages (mobilenet.py, ``interverted_residual_setting``): expansion t,
# channels c, blocks n, stride s.
DFAD_MOBILENETV2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def bn(name: str, c: int, affine: bool = True) -> Layout:
    """A BatchNorm2d(c): weight and bias (when affine), running statistics, the batch counter."""
    shapes = {f"{name}.weight": (c,), f"{name}.bias": (c,)} if affine else {}
    shapes.update({f"{name}.running_mean": (c,), f"{name}.running_var": (c,)})
    return {**shapes, f"{name}.num_batches_tracked": ()}


def conv(name: str, cout: int, cin: int, kernel: int, bias: bool = False) -> Layout:
    """A Conv2d with ``cin`` input channels per group."""
    shapes = {f"{name}.weight": (cout, cin, kernel, kernel)}
    return {**shapes, f"{name}.bias": (cout,)} if bias else shapes


def linear(name: str, cout: int, cin: int) -> Layout:
    return {f"{name}.weight": (cout, cin), f"{name}.bias": (cout,)}


def cifar_resnet(blocks: tuple[int, int, int, int], num_classes: int) -> Layout:
    """ResNet(BasicBlock, blocks): conv1 3x3 -> bn1 -> layer1-4 (widths 64-512, strides 1, 2, 2,
    2; blocks conv1, bn1, conv2, bn2 and a ``shortcut`` 1x1 conv-BN where the shape changes) ->
    linear. ResNet-18 is (2, 2, 2, 2), ResNet-34 (3, 4, 6, 3)."""
    layout = {**conv("conv1", 64, 3, 3), **bn("bn1", 64)}
    cin = 64
    for i, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks, strict=True), start=1):
        for j in range(count):
            block = f"layer{i}.{j}"
            layout |= conv(f"{block}.conv1", planes, cin, 3) | bn(f"{block}.bn1", planes)
            layout |= conv(f"{block}.conv2", planes, planes, 3) | bn(f"{block}.bn2", planes)
            if (i > 1 and j == 0) or cin != planes:
                layout |= conv(f"{block}.shortcut.0", planes, cin, 1)
                layout |= bn(f"{block}.shortcut.1", planes)
            cin = planes
    return layout | linear("linear", num_classes, 512)


def wide_resnet(depth: int, width: int, num_classes: int) -> Layout:
    """WideResNet(depth, num_classes, widen_factor=width): conv1 -> block1-3 (each a NetworkBlock
    whose ``layer`` holds (depth - 4) / 6 BasicBlocks: bn1, conv1, bn2, conv2 and a 1x1
    ``convShortcut`` where the width changes) -> bn1 -> fc."""
    widths = (16, 16 * width, 32 * width, 64 * width)
    layout = conv("conv1", 16, 3, 3)
    for b in (1, 2, 3):
        for j in range((depth - 4) // 6):
            cin, cout = widths[b - 1] if j == 0 else widths[b], widths[b]
            block = f"block{b}.layer.{j}"
            layout |= bn(f"{block}.bn1", cin) | conv(f"{block}.conv1", cout, cin, 3)
            layout |= bn(f"{block}.bn2", cout) | conv(f"{block}.conv2", cout, cout, 3)
            if cin != cout:
                layout |= conv(f"{block}.convShortcut", cout, cin, 1)
    return layout | bn("bn1", widths[3]) | linear("fc", num_classes, widths[3])


def generator_a(nz: int, ngf: int, nc: int, img_size: int) -> Layout:
    """GeneratorA(nz, ngf, nc, img_size): l1 = Sequential(Linear); conv_blocks0 = Sequential(BN);
    conv_blocks1 = Sequential(conv, BN, LeakyReLU); conv_blocks2 = Sequential(conv, BN, LeakyReLU,
    conv, Tanh, BN(affine=False)); convs 3x3 with bias."""
    init = img_size // 4
    return {
        **linear("l1.0", 2 * ngf * init**2, nz),
        **bn("conv_blocks0.0", 2 * ngf),
        **conv("conv_blocks1.0", 2 * ngf, 2 * ngf, 3, bias=True),
        **bn("conv_blocks1.1", 2 * ngf),
        **conv("conv_blocks2.0", ngf, 2 * ngf, 3, bias=True),
        **bn("conv_blocks2.1", ngf),
        **conv("conv_blocks2.3", nc, ngf, 3, bias=True),
        **bn("conv_blocks2.5", nc, affine=False),
    }


def generator_b(nz: int, ngf: int, nc: int, img_size: int) -> Layout:
    """GeneratorB(nz, ngf, nc, img_size): project = Sequential(Flatten, Linear); main =
    Sequential(BN, [ConvTranspose 4x4 (bias=False), BN, LeakyReLU] x4, Conv3x3, Tanh)."""
    init = img_size // 16

    def up(i: int, cin: int, cout: int) -> Layout:
        return {f"main.{i}.weight": (cin, cout, 4, 4), **bn(f"main.{i + 1}", cout)}

    return {
        **linear("project.1", 8 * ngf * init**2, nz),
        **bn("main.0", 8 * ngf),
        **up(1, 8 * ngf, 4 * ngf),
        **up(4, 4 * ngf, 2 * ngf),
        **up(7, 2 * ngf, ngf),
        **up(10, ngf, ngf),
        **conv("main.13", nc, ngf, 3, bias=True),
    }


def resnet50_backbone() -> Layout:
    """torchvision's resnet50 under ``backbone.`` as IntermediateLayerGetter keeps it (conv1, bn1,
    layer1-4; avgpool and fc dropped): Bottlenecks conv1 1x1, bn1, conv2 3x3, bn2, conv3 1x1 (x4),
    bn3, and ``downsample`` 1x1 conv-BN on each stage's first block."""
    layout = {**conv("backbone.conv1", 64, 3, 7), **bn("backbone.bn1", 64)}
    cin = 64
    for i, (planes, count) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for j in range(count):
            block = f"backbone.layer{i}.{j}"
            layout |= conv(f"{block}.conv1", planes, cin, 1) | bn(f"{block}.bn1", planes)
            layout |= conv(f"{block}.conv2", planes, planes, 3) | bn(f"{block}.bn2", planes)
            layout |= conv(f"{block}.conv3", 4 * planes, planes, 1)
            layout |= bn(f"{block}.bn3", 4 * planes)
            if j == 0:
                layout |= conv(f"{block}.downsample.0", 4 * planes, cin, 1)
                layout |= bn(f"{block}.downsample.1", 4 * planes)
            cin = 4 * planes
    return layout


def deeplab_head(cin: int, classes: int, channels: int = 256, rates: int = 3) -> Layout:
    """torchvision's DeepLabHead (DFAD's has the same layers) under ``classifier.``:
    Sequential(ASPP, conv3x3, BN, ReLU, conv1x1); ASPP.convs = [Sequential(conv1x1, BN, ReLU),
    ASPPConv(conv3x3, BN, ReLU) per rate, ASPPPooling(AdaptiveAvgPool2d, conv1x1, BN, ReLU)];
    ASPP.project = Sequential(conv1x1, BN, ReLU, Dropout). Every conv but the last has no bias."""
    layout = {
        **conv("classifier.0.convs.0.0", channels, cin, 1),
        **bn("classifier.0.convs.0.1", channels),
    }
    for i in range(1, rates + 1):
        layout |= conv(f"classifier.0.convs.{i}.0", channels, cin, 3)
        layout |= bn(f"classifier.0.convs.{i}.1", channels)
    pool = f"classifier.0.convs.{rates + 1}"
    layout |= conv(f"{pool}.1", channels, cin, 1) | bn(f"{pool}.2", channels)
    layout |= conv("classifier.0.project.0", channels, (rates + 2) * channels, 1)
    layout |= bn("classifier.0.project.1", channels)
    layout |= conv("classifier.1", channels, channels, 3) | bn("classifier.2", channels)
    return layout | conv("classifier.4", classes, channels, 1, bias=True)


def fcn_aux_head(classes: int) -> Layout:
    """torchvision's FCNHead(1024, classes) under ``aux_classifier.``: conv3x3 to 256 (no bias),
    BN, ReLU, Dropout, conv1x1 with bias."""
    return {
        **conv("aux_classifier.0", 256, 1024, 3),
        **bn("aux_classifier.1", 256),
        **conv("aux_classifier.4", classes, 256, 1, bias=True),
    }


def dfad_mobilenetv2_backbone() -> Layout:
    """DFAD's MobileNetV2 under ``backbone.`` as IntermediateLayerGetter keeps it (``features``
    only): features.0 = conv_bn (conv3x3, BN, ReLU6); each InvertedResidual's ``conv`` is one flat
    Sequential: [pw conv, BN, ReLU6,] dw conv, BN, ReLU6, pw-linear conv, BN (the expansion only
    when t != 1); no biases."""
    layout = {**conv("backbone.features.0.0", 32, 3, 3), **bn("backbone.features.0.1", 32)}
    cin, index = 32, 1
    for t, c, n, _ in DFAD_MOBILENETV2_SETTING:
        for _ in range(n):
            block, hidden = f"backbone.features.{index}.conv", cin * t
            if t != 1:
                layout |= conv(f"{block}.0", hidden, cin, 1) | bn(f"{block}.1", hidden)
            first = 0 if t == 1 else 3
            layout |= conv(f"{block}.{first}", hidden, 1, 3) | bn(f"{block}.{first + 1}", hidden)
            layout |= conv(f"{block}.{first + 3}", c, hidden, 1) | bn(f"{block}.{first + 4}", c)
            cin, index = c, index + 1
    return layout
