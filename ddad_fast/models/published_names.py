"""Published state_dicts in our models' names.

Our models take the module names of the public code they follow (DFAD's ``resnet_8x``, GeneratorA,
GeneratorB and DeepLabV3 teacher and student; the CIFAR ResNets and Wide-ResNets of CMI and
Fast-Datafree; DeepInversion's CIFAR ResNet; torchvision's DeepLabV3), so the parameters of a
published state_dict need no renaming. What such a file holds beyond them is set aside here.
"""

from __future__ import annotations

from torch import Tensor

# DataParallel and DistributedDataParallel save every key under their wrapped ``module``.
DATA_PARALLEL_PREFIX = "module."
# torchvision's DeepLabV3 checkpoints carry an auxiliary FCN head on layer3 (``aux_classifier.*``):
# it adds a loss in training and plays no part in the model's output; our DeepLabV3 has none.
AUXILIARY_HEAD_PREFIX = "aux_classifier."


def in_our_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` (a published state_dict) without the ``module.`` prefix, when every key has it,
    and without torchvision's auxiliary head; a new dict, ``state`` is left as it is."""
    if state and all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith(AUXILIARY_HEAD_PREFIX)}
