"""``build_trainer``: a ``DDADTrainer`` from a ``DistillConfig`` alone (the data, the teacher from
its checkpoint, a fresh student and generator, the process group under torchrun)."""

from __future__ import annotations

import torch

from .backends import DistillOps
from .data import load_dataset
from .distill_config import DistillConfig
from .distributed import init_distributed
from .errors import ConfigError
from .model_io import load_model
from .models import build_model
from .tasks import check_task, get_task
from .trainer import DDADTrainer


def build_trainer(cfg: DistillConfig, ops: DistillOps | None = None) -> DDADTrainer:
    """Load the data and the teacher, build student and generator, check they fit together.

    Under torchrun this also joins the process group (``distributed.init_distributed``).
    """
    if cfg.teacher_ckpt is None:
        raise ConfigError(
            "distillation needs a trained teacher: give teacher_ckpt (--teacher-ckpt)"
        )
    check_task(cfg.task, {"student": cfg.student}, cfg.dataset)
    _, test_set, info = load_dataset(cfg.dataset, cfg.data_root, cfg.image_size)
    facts = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": info.image_size,
    }
    teacher, _ = load_model(cfg.teacher_ckpt, cfg.teacher, **facts, task=cfg.task)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, **facts)
    task = get_task(cfg.task)
    generator = task.make_generator(
        cfg.nz, cfg.ngf, info.in_channels, info.image_size, cfg.seg_generator_bn
    )
    dist = init_distributed(cfg.device)
    return DDADTrainer(cfg, teacher, student, generator, test_set, info, ops, dist)
