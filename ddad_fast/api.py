"""``distill``: a DDAD run from Python, for any teacher module with BatchNorm layers and any
student module (or registry name), with or without evaluation data."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import shape_info
from .data.seg_folders import IGNORE as SEG_IGNORE_INDEX
from .distill_config import DistillConfig
from .errors import ConfigError
from .first_output import FirstOutput
from .model_io import class_path
from .models import build_model
from .run_folder import check_out_dir
from .tasks import get_task
from .trainer import DDADTrainer, DistillResult

# Settings that distill()'s own arguments give, and which argument gives each.
ARGUMENT_SETTINGS = {
    "teacher_ckpt": "teacher",
    "teacher": "teacher",
    "student": "student",
    "dataset": "eval_set",
    "data_root": "eval_set",
    "num_classes": "num_classes",
    "in_channels": "image_shape",
    "image_size": "image_shape",
}


def _config(settings: dict[str, Any]) -> DistillConfig:
    """A DistillConfig from keyword settings; an unknown name, or one of ``ARGUMENT_SETTINGS``,
    is a ConfigError naming the close ones or the argument to use."""
    names = [f.name for f in dataclasses.fields(DistillConfig) if f.name not in ARGUMENT_SETTINGS]
    for name in settings:
        if name in ARGUMENT_SETTINGS:
            raise ConfigError(
                f"setting {name!r} is given by distill()'s argument {ARGUMENT_SETTINGS[name]!r}"
            )
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
            hint = f"close ones: {', '.join(close)}" if close else "see DistillConfig's fields"
            raise ConfigError(f"unknown setting {name!r}; {hint}")
    return DistillConfig(**settings)


def distill(
    teacher: nn.Module,
    student: nn.Module | str,
    num_classes: int,
    image_shape: tuple[int, int, int],
    eval_set: Dataset | None = None,
    *,
    overwrite: bool = False,
    **settings: Any,
) -> tuple[nn.Module, DistillResult]:
    """Distil ``teacher`` into ``student`` on generated images alone; one process.

    teacher: a trained classifier with BatchNorm2d layers, images (N, C, H, W) -> logits
    (N, num_classes), or a tuple/list whose first element they are (e.g. ``(logits, features)``);
    it is moved to the device and frozen. student: a module of the same input and output, or a
    registry name (``tinycnn``, ``resnet18``, ...). image_shape: (C, H, W) with H == W, the images
    the generator makes. eval_set: (image, label) pairs normalised as the teacher's training data
    were, scored each epoch (None: no evaluation; ``student.pt`` is then written instead of
    ``best.pt``); for ``task="seg"`` label maps (H, W) whose 255 pixels no score counts, as in
    CamVid, NYUv2 and DFAD's loaders. overwrite: replace a run already in ``out_dir``.
    settings: ``DistillConfig`` fields (``epochs=2``, ``out_dir="runs/x"``, ``device="cpu"``,
    ``resume=True``, ...).

    Checkpoints name the student's architecture: its registry name, or the ``module:qualname`` of
    a module's class, whose ``state_dict`` loads back into that class. Returns (the trained
    student, the run's ``DistillResult``).
    """
    channels, height, width = image_shape
    if height != width:
        raise ConfigError(f"image_shape must be square (C, S, S), got {tuple(image_shape)}")
    name = student if isinstance(student, str) else class_path(student)
    cfg = dataclasses.replace(
        _config(settings),
        teacher=class_path(teacher),
        student=name,
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
    )
    cfg.validate()
    check_out_dir(cfg.out_dir, cfg.resume, overwrite)
    info = shape_info(num_classes, channels, height)
    if get_task(cfg.task).dense:
        info = dataclasses.replace(info, ignore_index=SEG_IGNORE_INDEX)
    torch.manual_seed(cfg.seed)
    if isinstance(student, str):
        student = build_model(student, num_classes, channels, height)
    generator = get_task(cfg.task).make_generator(
        cfg.nz, cfg.ngf, channels, height, cfg.seg_generator_bn
    )
    trainer = DDADTrainer(cfg, FirstOutput(teacher), student, generator, eval_set, info)
    return trainer.student, trainer.fit()
