"""Published distillation commands as settings: ``ddad distill --recipe NAME`` starts from
``RECIPES[NAME]`` (DistillConfig fields and values), and every flag given on the command line
overrides it.

Each value names its source: a file of VainF/Data-Free-Adversarial-Distillation (DFAD) or of
NVlabs/DeepInversion, and the flag or line there. What those scripts set that has no setting here
is said beside the recipe.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

# What every DFAD_*.py script of VainF/Data-Free-Adversarial-Distillation shares.
_DFAD = {
    "seed": 1,  # DFAD_*.py --seed default
    "epoch_iters": 50,  # DFAD_*.py --epoch_itrs default
    "student_steps": 5,  # DFAD_*.py train(): `for k in range(5)` per generator step
    "nz": 256,  # DFAD_*.py --nz default
    "ngf": 64,  # network/gan.py: GeneratorA's and GeneratorB's ngf default
    "student_optimizer": "sgd",  # DFAD_*.py: optim.SGD for the student (Adam for the generator)
    "lr_student": 0.1,  # DFAD_*.py --lr_S default
    "momentum": 0.9,  # DFAD_*.py: optim.SGD(..., momentum=0.9), written out (--momentum unused)
    "lr_generator": 1e-3,  # DFAD_*.py --lr_G default
    "schedule": "step",  # README.md: every student command passes --scheduler
    "step_gamma": 0.1,  # DFAD_*.py: MultiStepLR / StepLR gamma 0.1 (NYUv2: 0.3)
    "lambda_bn": 0.0,  # DFAD_*.py loss_G: the adversarial term alone, no BN-statistics term
    "lambda_adv": 1.0,  # DFAD_*.py loss_G = -L1(s, t) (seg: -log(1 + L1), what --task seg does)
    "lambda_onehot": 0.0,  # DFAD_*.py loss_G: no DAFL term
    "lambda_entropy": 0.0,  # DFAD_*.py loss_G: no DAFL term
    "lambda_activation": 0.0,  # DFAD_*.py loss_G: no DAFL term
    "center_logits": False,  # DFAD_*.py: F.l1_loss on the logits as they are
    "replay": 0,  # DFAD_*.py: every student step on fresh images
}
# Not here: DFAD's --test_batch_size (our evaluation batch is fixed), cudnn.deterministic, the
# visdom logging; Caltech-101's GeneratorB (our classification generator is always GeneratorA).

_DFAD_CIFAR10 = {
    **_DFAD,
    "task": "cls",  # DFAD_cifar.py: classification
    "teacher": "resnet34",  # DFAD_cifar.py: network.resnet_8x.ResNet34_8x (alias resnet34_8x)
    "student": "resnet18",  # DFAD_cifar.py: network.resnet_8x.ResNet18_8x (alias resnet18_8x)
    "dataset": "cifar10",  # README.md: DFAD_cifar.py --dataset cifar10
    "image_size": 32,  # DFAD_cifar.py: GeneratorA(img_size=32)
    "batch_size": 256,  # DFAD_cifar.py --batch_size default
    "weight_decay": 5e-4,  # DFAD_cifar.py --weight_decay default
    "epochs": 500,  # DFAD_cifar.py --epochs default
    "milestones": (100, 200),  # DFAD_cifar.py --scheduler: MultiStepLR([100, 200], 0.1)
}

_DFAD_SEG = {
    **_DFAD,
    "task": "seg",  # DFAD_camvid_deeplab.py, DFAD_nyu_deeplab.py: segmentation
    "teacher": "deeplabv3_resnet50_dfad",  # DFAD_*_deeplab.py: deeplabv3_resnet50 (rates 12/24/32)
    "student": "deeplabv3_mobilenetv2_dfad",  # DFAD_*_deeplab.py: deeplabv3_mobilenet
    "image_size": 128,  # DFAD_*_deeplab.py: GeneratorB(img_size=128)
    "seg_generator_bn": False,  # network/gan.py: GeneratorB ends with its tanh
    "batch_size": 64,  # DFAD_*_deeplab.py --batch_size default
    "epochs": 300,  # DFAD_*_deeplab.py --epochs default
    "step_every": 100,  # DFAD_*_deeplab.py --scheduler: StepLR(--step_size 100)
}

RECIPES: dict[str, dict[str, Any]] = {
    # DistillConfig's defaults: DFAD's CIFAR-10 command with the BN-statistics term (lambda_bn 1).
    "ddad": {},
    "dfad-cifar10": _DFAD_CIFAR10,
    "dfad-cifar100": {
        **_DFAD_CIFAR10,
        "dataset": "cifar100",  # README.md: DFAD_cifar.py --dataset cifar100
    },
    "dfad-caltech101": {
        **_DFAD,
        "task": "cls",  # DFAD_caltech101.py: classification
        "teacher": "resnet34",  # DFAD_caltech101.py: torchvision resnet34 (ours: the CIFAR one)
        "student": "resnet18",  # DFAD_caltech101.py: torchvision resnet18 (ours: the CIFAR one)
        "dataset": "caltech101",  # DFAD_caltech101.py --dataset default
        "image_size": 128,  # DFAD_caltech101.py: GeneratorB(img_size=128)
        "batch_size": 64,  # README.md: DFAD_caltech101.py --batch_size 64
        "lr_student": 0.05,  # README.md: DFAD_caltech101.py --lr_S 0.05
        "weight_decay": 5e-4,  # DFAD_caltech101.py --weight_decay default
        "epochs": 300,  # DFAD_caltech101.py --epochs default
        "step_every": 100,  # DFAD_caltech101.py --scheduler: StepLR(--step_size 100, 0.1)
    },
    "dfad-camvid": {
        **_DFAD_SEG,
        "dataset": "camvid",  # DFAD_camvid_deeplab.py --dataset default
        "weight_decay": 5e-4,  # DFAD_camvid_deeplab.py --weight_decay default
    },
    "dfad-nyuv2": {
        **_DFAD_SEG,
        "dataset": "nyuv2",  # DFAD_nyu_deeplab.py --dataset default
        "weight_decay": 5e-5,  # DFAD_nyu_deeplab.py --weight_decay default
        "step_gamma": 0.3,  # DFAD_nyu_deeplab.py --scheduler: StepLR(100, gamma=0.3)
    },
    # A generator trained on the teacher's BN statistics alone, at DeepInversion's weight; the
    # rest our defaults. Not here: its cross-entropy on fixed targets, total-variation and L2
    # priors, jitter, and its Adam rate --di_lr 0.05, which moves pixels, not a generator's weights.
    "deepinversion-bn": {
        "teacher": "resnet34",  # NVlabs/DeepInversion cifar10/deepinversion_cifar10.py: ResNet34
        "student": "resnet18",  # cifar10/deepinversion_cifar10.py: ResNet18
        "dataset": "cifar10",  # cifar10/deepinversion_cifar10.py: CIFAR-10
        "image_size": 32,  # cifar10/deepinversion_cifar10.py: inputs (bs, 3, 32, 32)
        "batch_size": 256,  # cifar10/README.md: --bs=256
        "lambda_bn": 10.0,  # cifar10/README.md: --r_feature_weight=10 (the paper's parameters)
        "lambda_adv": 0.0,  # cifar10/deepinversion_cifar10.py --cig_scale default 0: no student
    },
}


def recipe_settings(name: str) -> dict[str, Any]:
    """The settings of the recipe ``name``; a ConfigError names the recipes for an unknown one."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
