"""Supervised training of a registry model on a real dataset: the teacher DDAD needs."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .batching import iterate_batches
from .checkpoint import (
    changed_settings,
    check_same_settings,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .data import load_dataset, seg_augment, train_augment
from .distributed import resolve_device
from .errors import CheckpointError, ConfigError, DDADError
from .metrics import MetricsLog
from .model_io import model_record
from .models import build_model
from .optimizers import check_optimizer, make_optimizer
from .schedules import make_scheduler
from .tasks import check_task, get_task

TEACHER_TRAIN_KIND = "ddad_fast.teacher_training"
RESUMABLE_CHANGES = frozenset({"resume", "device", "out_dir", "data_root", "progress"})


@dataclass
class TeacherConfig:
    """Settings of supervised teacher training (SGD or Adam, a schedule, shift/flip augmentation).

    For segmentation (``task="seg"``) the loss is per-pixel cross-entropy that skips the dataset's
    ignored label, the augmentation is the same random flip of image and label map, and the score
    is mean IoU.
    """

    task: str = "cls"  # cls (classification) or seg (segmentation)
    model: str = "resnet34"
    dataset: str = "cifar10"
    data_root: str | None = None
    image_size: int | None = None
    out_dir: str = "runs/teacher"  # teacher.pt (the model), last.pt (to resume), metrics.csv
    device: str = "auto"
    seed: int = 0
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd (with momentum) or adam
    lr: float = 0.1
    momentum: float = 0.9  # SGD's
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    augment: bool = True  # random shifts (cls) and flips where the dataset allows them
    resume: bool = False
    progress: bool = True

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check_optimizer("optimizer", self.optimizer)
        check_task(self.task, {"model": self.model}, self.dataset)


def train_teacher(cfg: TeacherConfig) -> float:
    """Train ``cfg.model`` on ``cfg.dataset``; writes ``out_dir/teacher.pt`` every epoch.

    Returns the final test score in percent: accuracy (cls) or mean IoU (seg).
    """
    cfg.validate()
    task = get_task(cfg.task)
    device = resolve_device(cfg.device)
    train_set, test_set, info = load_dataset(cfg.dataset, cfg.data_root, cfg.image_size)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, info.num_classes, info.in_channels, info.image_size).to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    sched = make_scheduler(opt, cfg.schedule, cfg.epochs)
    shuffle_rng = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out_dir)
    done, acc = 0, float("nan")
    if cfg.resume:
        ckpt = load_checkpoint(out / "last.pt")
        if ckpt.get("kind") != TEACHER_TRAIN_KIND:
            raise CheckpointError(
                f"{out / 'last.pt'} is not a ddad_fast teacher-training checkpoint"
            )
        check_same_settings(
            ckpt["config"], asdict(cfg), RESUMABLE_CHANGES, out / "last.pt", asdict(TeacherConfig())
        )
        model.load_state_dict(ckpt["model"]["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        shuffle_rng.set_state(ckpt["shuffle_rng"])
        done = ckpt["epoch"]
        acc = ckpt["model"]["test_acc"]
    log = MetricsLog(out / "metrics.csv", done if cfg.resume else None)
    facts = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": info.image_size,
    }
    start = time.perf_counter()
    for epoch in tqdm(
        range(done + 1, cfg.epochs + 1),
        initial=done,
        total=cfg.epochs,
        desc=f"teacher {cfg.model}",
        disable=not cfg.progress,
    ):
        model.train()
        loss_sum = torch.zeros((), device=device)
        batches = 0
        for x, y in iterate_batches(train_set, cfg.batch_size, device, True, shuffle_rng):
            if cfg.augment and task.dense:
                x, y = seg_augment(x, y, info, None)
            elif cfg.augment:
                x = train_augment(x, info, None)
            ignore = -100 if info.ignore_index is None else info.ignore_index  # -100: torch's
            loss = F.cross_entropy(
                model(x), y, ignore_index=ignore, label_smoothing=cfg.label_smoothing
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            batches += 1
        sched.step()
        acc = task.score(model, test_set, device, info)
        record = model_record(
            cfg.model,
            model,
            **facts,
            dataset=cfg.dataset,
            task=cfg.task,
            test_acc=acc,
            epoch=epoch,
        )
        save_atomic(record, out / "teacher.pt")
        save_atomic(
            {
                "kind": TEACHER_TRAIN_KIND,
                "config": asdict(cfg),
                "epoch": epoch,
                "model": record,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": rng_state(),
                "shuffle_rng": shuffle_rng.get_state(),
            },
            out / "last.pt",
        )
        log.append(
            {
                "epoch": epoch,
                "loss": round(loss_sum.item() / max(batches, 1), 6),
                f"test_{task.score_name}": round(acc, 3),
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    return acc


def cached_teacher(cfg: TeacherConfig) -> Path | None:
    """``out_dir/teacher.pt`` if a finished run with the same settings left it there, else None
    (the demos and the accuracy study reuse a teacher this way)."""
    last = Path(cfg.out_dir) / "last.pt"
    try:
        ckpt = load_checkpoint(last)
    except DDADError:
        return None
    saved, defaults = ckpt.get("config", {}), asdict(TeacherConfig())
    same = not changed_settings(saved, asdict(cfg), RESUMABLE_CHANGES, defaults)
    done = ckpt.get("kind") == TEACHER_TRAIN_KIND and ckpt.get("epoch") == cfg.epochs
    teacher = Path(cfg.out_dir) / "teacher.pt"
    return teacher if same and done and teacher.is_file() else None
