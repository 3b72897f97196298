"""Supervised training of a registry model on a real dataset: the teacher DDAD needs."""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .batching import iterate_batches
from .checkpoint import (
    check_same_settings,
    load_checkpoint,
    load_state_strict,
    resume_may_change,
    rng_state,
    run_of,
    save_atomic,
    set_rng_state,
)
from .data import load_dataset, seg_augment, train_augment
from .distributed import resolve_device
from .errors import CheckpointError, ConfigError
from .metrics import MetricsLog
from .model_io import model_record
from .models import build_model
from .optimizers import check_optimizer, make_optimizer
from .run_folder import RunLock, remove_previous_outputs
from .schedules import check_schedule, make_scheduler
from .setting_checks import (
    check_at_least,
    check_device,
    check_finite,
    check_image_size,
    check_momentum,
    check_non_negative,
)
from .signals import Stopped, StopRequest, stop_line
from .tasks import check_task, get_task

TEACHER_TRAIN_KIND = "ddad_fast.teacher_training"
RESUMABLE_CHANGES = frozenset({"resume", "device", "out_dir", "data_root", "progress"})


@dataclass
class TeacherConfig:
    """Settings of supervised teacher training (SGD or Adam, a schedule, shift/flip augmentation).

    For segmentation (``task="seg"``) the loss is per-pixel cross-entropy that skips the dataset's
    ignored label, the augmentation is DFAD's random crop and flip, drawn once for image and label
    map (``data.augment.seg_augment``), and the score is mean IoU.
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
        """Raise ConfigError on settings that cannot work, before any data or model loads."""
        check_finite(self)
        check_at_least(self, 1, "epochs", "batch_size")
        check_non_negative(self, "lr", "weight_decay")
        check_momentum(self.momentum)
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        check_optimizer("optimizer", self.optimizer)
        check_schedule(self.schedule)
        check_image_size(self.image_size)
        check_device(self.device)
        check_task(self.task, {"model": self.model}, self.dataset)


class _TeacherRun:
    """A teacher run's model, optimiser, schedule, RNGs and position: what ``last.pt`` holds.

    ``batch`` > 0 marks a run stopped inside an epoch: ``last.pt`` then also holds the shuffle
    RNG as that epoch began and the epoch's loss so far, so the resumed epoch draws the same
    order, skips the batches done and ends with the same weights and logged loss.
    """

    def __init__(self, cfg: TeacherConfig):
        self.cfg = cfg
        self.task = get_task(cfg.task)
        self.device = resolve_device(cfg.device)
        self.train_set, self.test_set, self.info = load_dataset(
            cfg.dataset, cfg.data_root, cfg.image_size
        )
        info = self.info
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, info.num_classes, info.in_channels, info.image_size)
        self.model.to(self.device)
        self.opt = make_optimizer(
            cfg.optimizer, self.model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay
        )
        self.sched = make_scheduler(self.opt, cfg.schedule, cfg.epochs)
        self.shuffle_rng = torch.Generator().manual_seed(cfg.seed)
        self.out = Path(cfg.out_dir)
        self.epoch = 0  # epochs finished
        self.batch = 0  # batches finished in the epoch after them
        self.loss_sum = torch.zeros((), device=self.device)  # that epoch's, so far
        self.epoch_shuffle = self.shuffle_rng.get_state()  # the shuffle RNG as that epoch began
        self.acc = math.nan  # the last evaluated test score
        self.seconds_before = 0.0  # seconds the run took in the processes before this one
        self.outputs_own = False  # whether the files beside last.pt are this run's (resumed)
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def train_epoch(self, stop: StopRequest) -> bool:
        """Train on the current epoch's batches from ``batch`` on; False when a stop request
        ended it at a batch boundary first."""
        cfg, info = self.cfg, self.info
        self.model.train()
        if self.batch == 0:
            self.epoch_shuffle = self.shuffle_rng.get_state()
            self.loss_sum.zero_()
        else:  # resumed inside the epoch: the same order again, less the batches done
            self.shuffle_rng.set_state(self.epoch_shuffle)
        rng = self.shuffle_rng
        batches = iterate_batches(self.train_set, cfg.batch_size, self.device, True, rng)
        ignore = -100 if info.ignore_index is None else info.ignore_index  # -100: torch's
        for x, y in itertools.islice(batches, self.batch, None):
            if stop.requested:
                return False
            if cfg.augment and self.task.dense:
                x, y = seg_augment(x, y, info, None)
            elif cfg.augment:
                x = train_augment(x, info, None)
            loss = F.cross_entropy(
                self.model(x), y, ignore_index=ignore, label_smoothing=cfg.label_smoothing
            )
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.loss_sum += loss.detach()
            self.batch += 1
        return True

    def end_epoch(self) -> float:
        """Step the schedule, evaluate, move to the next epoch; returns the epoch's mean loss."""
        loss = self.loss_sum.item() / max(self.batch, 1)
        self.sched.step()
        self.acc = self.task.score(self.model, self.test_set, self.device, self.info)
        self.epoch += 1
        self.batch = 0
        return loss

    def record(self) -> dict:
        """The model's record (``teacher.pt``)."""
        info, cfg = self.info, self.cfg
        return model_record(
            cfg.model,
            self.model,
            info.num_classes,
            info.in_channels,
            info.image_size,
            dataset=cfg.dataset,
            task=cfg.task,
            test_acc=self.acc,
            epoch=self.epoch,
        )

    def save(self) -> None:
        """Write ``last.pt``, then, at an epoch's end, ``teacher.pt``. A fresh run's first
        checkpoint removes what a previous run left beside them (``teacher.pt``, ``best.pt``,
        plots: ``run_folder.OUTPUT_FILES``): the folder's model is this run's or none."""
        save_atomic(
            {
                "kind": TEACHER_TRAIN_KIND,
                "config": asdict(self.cfg),
                "epoch": self.epoch,
                "batch": self.batch,
                "loss_sum": self.loss_sum.cpu(),
                "epoch_shuffle_rng": self.epoch_shuffle,
                "model": self.record(),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "rng": rng_state(),
                "shuffle_rng": self.shuffle_rng.get_state(),
                "seconds": self.seconds(),
            },
            self.out / "last.pt",
        )
        if not self.outputs_own:
            remove_previous_outputs(self.out)
            self.outputs_own = True
        if self.epoch > 0 and self.batch == 0:
            save_atomic(self.record(), self.out / "teacher.pt")

    def resume(self) -> None:
        """Continue from ``last.pt``: same settings (more epochs extend a finished run)."""
        path = self.out / "last.pt"
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != TEACHER_TRAIN_KIND:
            raise CheckpointError(f"{path} is not a ddad_fast teacher-training checkpoint")
        self.outputs_own = True  # what the folder holds beside last.pt is this run's
        saved = ckpt["config"]
        may_change = resume_may_change(
            RESUMABLE_CHANGES, saved, ckpt.get("epoch", 0), self.cfg.epochs
        )
        check_same_settings(saved, asdict(self.cfg), may_change, path, asdict(TeacherConfig()))
        try:
            load_state_strict(self.model, ckpt["model"]["state_dict"], path)
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            self.shuffle_rng.set_state(ckpt["shuffle_rng"])
            self.epoch, self.batch = ckpt["epoch"], ckpt.get("batch", 0)
            self.acc = ckpt["model"]["test_acc"]
            if self.batch:
                self.loss_sum = ckpt["loss_sum"].to(self.device)
                self.epoch_shuffle = ckpt["epoch_shuffle_rng"]
            self.seconds_before = ckpt.get("seconds", 0.0)
        except KeyError as e:
            raise CheckpointError(f"checkpoint {path} is missing its {e} entry") from None


def train_teacher(cfg: TeacherConfig) -> float:
    """Train ``cfg.model`` on ``cfg.dataset``; after every epoch writes ``out_dir/last.pt`` (to
    resume), ``out_dir/teacher.pt`` (the model) and a row of ``out_dir/metrics.csv``.

    Returns the final test score in percent: accuracy (cls) or mean IoU (seg). The run holds
    ``out_dir``'s lock (``run_folder``); a fresh run changes nothing of a previous run's files
    before its first ``last.pt``. A stop signal (SIGTERM, SIGUSR1, Ctrl-C: ``signals``) ends it
    at the next batch boundary: ``last.pt`` then records the batch inside the epoch,
    ``--resume`` continues exactly from there, and ``signals.Stopped`` is raised.
    """
    cfg.validate()
    with RunLock(cfg.out_dir), StopRequest() as stop:
        run = _TeacherRun(cfg)
        log = None
        if cfg.resume:
            run.resume()
            log = MetricsLog(run.out / "metrics.csv", run.epoch)
        bar = tqdm(
            initial=run.epoch,
            total=cfg.epochs,
            desc=f"teacher {cfg.model}",
            disable=not cfg.progress,
        )
        while run.epoch < cfg.epochs:
            lr = run.opt.param_groups[0]["lr"]  # this epoch's rate, before the schedule steps
            finished = run.train_epoch(stop)
            loss = run.end_epoch() if finished else math.nan
            run.save()
            if log is None:  # a fresh run's rows start at its first checkpoint
                log = MetricsLog(run.out / "metrics.csv")
            if finished:
                bar.update()
                log.append(
                    {
                        "epoch": run.epoch,
                        "loss": round(loss, 6),
                        f"test_{run.task.score_name}": round(run.acc, 3),
                        "lr": lr,
                        "seconds": round(run.seconds(), 2),
                    }
                )
            if stop.requested and run.epoch < cfg.epochs:
                bar.close()
                where = f"after epoch {run.epoch}"
                if run.batch:
                    where = f"at epoch {run.epoch + 1}, batch {run.batch}"
                line = stop_line("teacher", stop.signal_name, where, run.out / "last.pt")
                raise Stopped(stop.signal_name, line)
        bar.close()
    return run.acc


def cached_teacher(cfg: TeacherConfig) -> Path | None:
    """``out_dir/teacher.pt`` if a finished run with the same settings left it there, else None
    (the demos and the accuracy study reuse a teacher this way)."""
    ckpt = run_of(Path(cfg.out_dir) / "last.pt", TEACHER_TRAIN_KIND, cfg, RESUMABLE_CHANGES)
    teacher = Path(cfg.out_dir) / "teacher.pt"
    done = ckpt is not None and ckpt.get("epoch") == cfg.epochs
    return teacher if done and teacher.is_file() else None
