"""What DDAD does differently for classification (``cls``) and segmentation (``seg``): how a model
is scored, which generator makes the images, what the models output, and the generator's
adversarial term. The loop itself (``trainer.DDADTrainer``) is the same for both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .batching import accuracy
from .data import DatasetInfo, dataset_task
from .errors import ConfigError
from .models import Generator, SegGenerator, model_task
from .seg_metrics import evaluate_segmentation

TASK_NAMES = ("cls", "seg")
_LONG = {"cls": "classification", "seg": "segmentation"}


@dataclass(frozen=True)
class Task:
    """One task's parts of DDAD."""

    name: str  # cls or seg
    score_name: str  # the score's name in metrics columns: acc (accuracy) or miou (mean IoU)
    dense: bool  # models output logit maps (N, K, H, W) rather than logits (N, K)
    log_discrepancy: bool  # the generator maximises log(1 + L1) (DFAD's for segmentation)
    size_multiple: int  # the generator's image size: a multiple of 4 (GeneratorA), 16 (GeneratorB)

    def adversarial_loss(self, l1: Tensor) -> Tensor:
        """The generator's adversarial term, to minimise: ``-L1`` or ``-log(1 + L1)``."""
        return -torch.log1p(l1) if self.log_discrepancy else -l1

    def score(
        self, model: nn.Module, dataset: Dataset, device: torch.device | str, info: DatasetInfo
    ) -> float:
        """Top-1 accuracy (cls) or mean IoU over the classes present (seg), in percent."""
        if not self.dense:
            return accuracy(model, dataset, device)
        scores = evaluate_segmentation(model, dataset, device, info.num_classes, info.ignore_index)
        return 100.0 * scores.miou

    def make_generator(
        self, nz: int, ngf: int, channels: int, image_size: int, seg_out_bn: bool = False
    ) -> nn.Module:
        """DFAD's generator for the task: GeneratorA (cls) or the DCGAN-style GeneratorB (seg);
        ``seg_out_bn`` adds an affine-free BN after GeneratorB's tanh (``SegGenerator.out_bn``)."""
        if self.dense:
            return SegGenerator(nz, ngf, channels, image_size, out_bn=seg_out_bn)
        return Generator(nz, ngf, channels, image_size)


CLS = Task("cls", "acc", dense=False, log_discrepancy=False, size_multiple=4)
SEG = Task("seg", "miou", dense=True, log_discrepancy=True, size_multiple=16)


def get_task(name: str) -> Task:
    """The Task called ``name``; an unknown name is a ConfigError."""
    tasks = {"cls": CLS, "seg": SEG}
    if name not in tasks:
        raise ConfigError(f"unknown task {name!r}; known tasks: cls, seg")
    return tasks[name]


def check_task(task: str, models: dict[str, str] | None = None, dataset: str | None = None) -> None:
    """Refuse models (``{role: registry name}``) or a dataset made for another task than
    ``task``, naming the flag that fixes it."""
    get_task(task)
    for role, name in (models or {}).items():
        if model_task(name) != task:
            raise ConfigError(
                f"the {role} is {name!r}, a {_LONG[model_task(name)]} model, but the task is "
                f"{task} ({_LONG[task]}); use --task {model_task(name)} or a {_LONG[task]} model"
            )
    if dataset is not None and dataset_task(dataset) != task:
        raise ConfigError(
            f"dataset {dataset!r} is a {_LONG[dataset_task(dataset)]} dataset, but the task is "
            f"{task} ({_LONG[task]}); use --task {dataset_task(dataset)} or a {_LONG[task]} "
            "dataset"
        )
