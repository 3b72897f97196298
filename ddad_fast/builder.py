"""``build_trainer``: a ``DDADTrainer`` from a ``DistillConfig`` alone (the teacher from its
checkpoint, the evaluation data if any, a fresh student and generator, the process group under
torchrun)."""

from __future__ import annotations

import torch

from .backends import DistillOps
from .data import load_dataset, shape_info
from .distill_config import DistillConfig
from .distributed import init_distributed
from .errors import ConfigError
from .model_io import load_model
from .models import build_model
from .setting_checks import check_image_size
from .tasks import check_task, get_task
from .trainer import DDADTrainer

SHAPE_FACTS = ("num_classes", "in_channels", "image_size")
BARE_SHAPE_FLAGS = "--num-classes, --in-channels and --image-size (or an evaluation --dataset)"


def build_trainer(cfg: DistillConfig, ops: DistillOps | None = None) -> DDADTrainer:
    """Load the teacher (and the evaluation data, if ``cfg.dataset`` names one), build student
    and generator, check they fit together.

    The shape facts (class count, channels, image size) come from the dataset when there is one,
    else from the teacher's record or, for a bare state_dict, from ``cfg``'s own. Under torchrun
    this also joins the process group (``distributed.init_distributed``).
    """
    if cfg.teacher_ckpt is None:
        raise ConfigError(
            "distillation needs a trained teacher: give teacher_ckpt (--teacher-ckpt)"
        )
    check_task(cfg.task, {"student": cfg.student}, cfg.dataset)
    task = get_task(cfg.task)
    test_set = None
    if cfg.dataset is None:
        facts = {key: getattr(cfg, key) for key in SHAPE_FACTS}
    else:
        _, test_set, info = load_dataset(cfg.dataset, cfg.data_root, cfg.image_size)
        facts = {key: getattr(info, key) for key in SHAPE_FACTS}
        _check_dataset_facts(cfg, facts)
    teacher, record = load_model(
        cfg.teacher_ckpt, cfg.teacher, **facts, task=cfg.task, shape_flags=BARE_SHAPE_FLAGS
    )
    if cfg.dataset is None:
        info = shape_info(*(record[key] for key in SHAPE_FACTS))
        check_image_size(info.image_size, task.size_multiple)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, info.num_classes, info.in_channels, info.image_size)
    generator = task.make_generator(
        cfg.nz, cfg.ngf, info.in_channels, info.image_size, cfg.seg_generator_bn
    )
    dist = init_distributed(cfg.device)
    return DDADTrainer(cfg, teacher, student, generator, test_set, info, ops, dist)


def _check_dataset_facts(cfg: DistillConfig, facts: dict[str, int]) -> None:
    """Refuse a class count or channel count given beside a dataset that has another."""
    for key in ("num_classes", "in_channels"):
        given = getattr(cfg, key)
        if given is not None and given != facts[key]:
            raise ConfigError(
                f"{key} {given} differs from dataset {cfg.dataset}'s {facts[key]}: leave "
                f"--{key.replace('_', '-')} out, or evaluate on another dataset"
            )
