"""The DDAD loop: a generator against two discriminators (the teacher's BN statistics and the
student's discrepancy), and a student that imitates the teacher on generated images.

One loop for every backend: the backend only supplies the loss ops (``backends.DistillOps``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from .backends import DistillOps, get_backend
from .batching import accuracy
from .bn_hooks import BNStatsHooks
from .checkpoint import (
    check_same_settings,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .data import DatasetInfo, load_dataset
from .errors import CheckpointError, ConfigError
from .losses import negative_entropy_loss, onehot_loss
from .metrics import MetricsLog
from .model_io import load_model, model_record
from .models import Generator, build_model
from .schedules import make_scheduler

DISTILL_KIND = "ddad_fast.distill"

# Settings that may change between a run and its resumption; every other one must match.
RESUMABLE_CHANGES = frozenset({"resume", "device", "backend", "out_dir", "data_root", "progress"})


@dataclass
class DistillConfig:
    """Every setting of a DDAD run. Defaults follow the DFAD protocol on CIFAR-10."""

    teacher_ckpt: str | None = None  # teacher weights (our teacher.pt or a published state_dict)
    teacher: str | None = None  # registry name (default: the one recorded in teacher_ckpt)
    student: str = "resnet18"  # registry name of the student
    dataset: str = "cifar10"  # held-out split used only for evaluation
    data_root: str | None = None  # dataset folder (default: the dataset's usual place)
    image_size: int | None = None  # input size (default: the dataset's native size)
    out_dir: str = "runs/distill"  # metrics.csv, last.pt, best.pt go here
    backend: str = "eager"  # which implementation of the loss ops
    device: str = "auto"  # cpu, cuda, cuda:1, or auto (cuda when present)
    seed: int = 0
    epochs: int = 500
    epoch_iters: int = 50  # generator steps per epoch
    student_steps: int = 5  # student steps per generator step
    batch_size: int = 256
    nz: int = 256  # noise dimension
    ngf: int = 64  # generator width
    lr_student: float = 0.1  # SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_generator: float = 1e-3  # Adam
    schedule: str = "none"  # none, step (x0.1 at 20% and 40%, DFAD's), or cosine; both players
    lambda_bn: float = 1.0  # weight of the teacher's BN-statistics term (0: plain DFAD)
    lambda_onehot: float = 0.0  # DAFL one-hot term (off by default)
    lambda_entropy: float = 0.0  # DAFL information-entropy term (off by default)
    resume: bool = False  # continue from out_dir/last.pt
    progress: bool = True  # tqdm bars

    def validate(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        for name in ("epochs", "epoch_iters", "student_steps", "batch_size", "nz", "ngf"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("lr_student", "lr_generator", "lambda_bn", "lambda_onehot", "lambda_entropy"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BN statistics need a batch")


@dataclass
class DistillResult:
    teacher_acc: float
    best_acc: float
    final_acc: float
    epochs: int
    seconds: float


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where present, else CPU; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA GPU")
    return torch.device(name)


class DDADTrainer:
    """Runs DDAD between a frozen teacher, a student and a generator.

    Each iteration: ``student_steps`` student steps minimising L1(t, s) on detached generated
    images, then one generator step minimising ``-L1(t, s) + lambda_bn * bn_loss`` (+ the optional
    DAFL terms). Evaluation, metrics and checkpoints once per epoch.
    """

    def __init__(
        self,
        cfg: DistillConfig,
        teacher: nn.Module,
        student: nn.Module,
        generator: nn.Module,
        test_set: Dataset,
        info: DatasetInfo,
        ops: DistillOps | None = None,
    ):
        cfg.validate()
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.ops = ops or get_backend(cfg.backend)
        self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.student = student.to(self.device).train()
        self.generator = generator.to(self.device).train()
        self.test_set = test_set
        self.info = info
        self.bn_hooks = (
            BNStatsHooks(self.teacher, self.ops.bn_stats_loss) if cfg.lambda_bn > 0 else None
        )
        if self.ops.channels_last:
            for model in (self.teacher, self.student, self.generator):
                model.to(memory_format=torch.channels_last)
        fused = self.ops.fused_optimizers or None  # None: torch's default implementation
        self.opt_student = torch.optim.SGD(
            self.student.parameters(),
            lr=cfg.lr_student,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            fused=fused,
        )
        self.opt_generator = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr_generator, fused=fused
        )
        self._student_loss = self.ops.compiled(self.student_loss, self.device)
        self._generator_loss = self.ops.compiled(self.generator_loss, self.device)
        self.sched_student = make_scheduler(self.opt_student, cfg.schedule, cfg.epochs)
        self.sched_generator = make_scheduler(self.opt_generator, cfg.schedule, cfg.epochs)
        self.noise_rng = torch.Generator(device=self.device)
        self.noise_rng.manual_seed(cfg.seed)
        self.out_dir = Path(cfg.out_dir)
        self.epoch = 0
        self.best_acc = -1.0

    # ----------------------------------------------------------------------------- one step each
    def noise(self) -> Tensor:
        """A batch of generator inputs z: (batch_size, nz), drawn on the device."""
        return torch.randn(
            (self.cfg.batch_size, self.cfg.nz), device=self.device, generator=self.noise_rng
        )

    def student_loss(self, z: Tensor) -> Tensor:
        """L1(teacher, student) on the images G(z) (generator and teacher without gradients).

        z: (B, nz). Returns a scalar (fp32). The backend may compile this function.
        """
        with torch.no_grad(), self.ops.autocast(self.device):
            images = self.generator(z)
            t_logits = self.teacher(images)
        with self.ops.autocast(self.device):
            s_logits = self.student(images)
        return self.ops.l1_discrepancy(t_logits, s_logits)

    def generator_loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The generator's objective on G(z): ``-L1(t, s) + lambda_bn * bn_loss`` (+ DAFL terms).

        z: (B, nz). Returns (loss to minimise, detached [L1, bn_loss, loss]). The backend may
        compile this function.
        """
        cfg = self.cfg
        with self.ops.autocast(self.device):
            images = self.generator(z)
            if self.bn_hooks is not None:
                self.bn_hooks.start()
                t_logits = self.teacher(images)
                bn_loss = self.bn_hooks.collect()
            else:
                t_logits = self.teacher(images)
                bn_loss = torch.zeros((), device=z.device)
            s_logits = self.student(images)
        l1 = self.ops.l1_discrepancy(t_logits, s_logits)
        loss = -l1 + cfg.lambda_bn * bn_loss
        if cfg.lambda_onehot > 0:
            loss = loss + cfg.lambda_onehot * onehot_loss(t_logits)
        if cfg.lambda_entropy > 0:
            loss = loss + cfg.lambda_entropy * negative_entropy_loss(t_logits)
        return loss, torch.stack([l1, bn_loss, loss]).detach()

    def student_step(self) -> Tensor:
        """One SGD step of the student on L1(teacher, student) over fresh generated images."""
        self.ops.step_begin()
        loss = self._student_loss(self.noise())
        self.opt_student.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_student.step()
        return loss.detach()

    def generator_step(self) -> Tensor:
        """One Adam step of the generator; returns [L1, bn_loss, generator loss] (detached)."""
        self.ops.step_begin()
        # The student is a discriminator here: frozen, so no weight gradients are computed for it.
        self.student.requires_grad_(False)
        loss, parts = self._generator_loss(self.noise())
        self.student.requires_grad_(True)
        self.opt_generator.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_generator.step()
        return parts

    # ----------------------------------------------------------------------------- the loop
    def train_epoch(self) -> dict[str, float]:
        """``epoch_iters`` iterations; returns the epoch's mean losses (one host sync)."""
        cfg = self.cfg
        student_sum = torch.zeros((), device=self.device)
        generator_sum = torch.zeros(3, device=self.device)
        bar = tqdm(
            range(cfg.epoch_iters),
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not cfg.progress,
        )
        for it in bar:
            for _ in range(cfg.student_steps):
                student_sum += self.student_step()
            generator_sum += self.generator_step()
            if (it + 1) % 10 == 0:  # a host sync, every 10 iterations only
                bar.set_postfix(l1=f"{generator_sum[0].item() / (it + 1):.4f}")
        student_mean = (student_sum / (cfg.epoch_iters * cfg.student_steps)).item()
        l1, bn, gen = (generator_sum / cfg.epoch_iters).tolist()
        return {
            "loss_student": student_mean,
            "l1_generator": l1,
            "bn_loss": bn,
            "loss_generator": gen,
        }

    def fit(self, stop_after: int | None = None) -> DistillResult:
        """Train until ``cfg.epochs`` (resuming from ``out_dir/last.pt`` when ``cfg.resume``).

        ``stop_after`` ends this call after that many epochs, leaving a resumable ``last.pt``.
        """
        cfg = self.cfg
        if cfg.resume:
            self.load(self.out_dir / "last.pt")
        log = MetricsLog(self.out_dir / "metrics.csv", self.epoch if cfg.resume else None)
        teacher_acc = accuracy(self.teacher, self.test_set, self.device)
        start = time.perf_counter()
        acc = float("nan")
        for done, _ in enumerate(self._epochs()):
            if stop_after is not None and done == stop_after:
                break
            losses = self.train_epoch()
            self.sched_student.step()
            self.sched_generator.step()
            self.epoch += 1
            acc = accuracy(self.student, self.test_set, self.device)
            if acc > self.best_acc:
                self.best_acc = acc
                save_atomic(self._student_record(acc), self.out_dir / "best.pt")
            save_atomic(self.state_dict(), self.out_dir / "last.pt")
            log.append(
                {
                    "epoch": self.epoch,
                    **{k: round(v, 6) for k, v in losses.items()},
                    "student_acc": round(acc, 3),
                    "best_acc": round(self.best_acc, 3),
                    "teacher_acc": round(teacher_acc, 3),
                    "lr_student": self.opt_student.param_groups[0]["lr"],
                    "lr_generator": self.opt_generator.param_groups[0]["lr"],
                    "seconds": round(time.perf_counter() - start, 2),
                }
            )
        if self.bn_hooks is not None:
            self.bn_hooks.remove()
        return DistillResult(
            teacher_acc=teacher_acc,
            best_acc=self.best_acc,
            final_acc=acc,
            epochs=self.epoch,
            seconds=time.perf_counter() - start,
        )

    def _epochs(self) -> Iterator[int]:
        bar = tqdm(
            range(self.epoch, self.cfg.epochs),
            initial=self.epoch,
            total=self.cfg.epochs,
            desc="distill",
            disable=not self.cfg.progress,
        )
        yield from bar

    # ----------------------------------------------------------------------------- checkpoints
    def _student_record(self, acc: float) -> dict:
        info = self.info
        return model_record(
            self.cfg.student,
            self.student,
            info.num_classes,
            info.in_channels,
            info.image_size,
            dataset=info.name,
            test_acc=acc,
            epoch=self.epoch,
        )

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: models, optimisers, schedules, RNGs, step."""
        return {
            "kind": DISTILL_KIND,
            "config": asdict(self.cfg),
            "epoch": self.epoch,
            "best_acc": self.best_acc,
            "model": self._student_record(self.best_acc),
            "generator": self.generator.state_dict(),
            "opt_student": self.opt_student.state_dict(),
            "opt_generator": self.opt_generator.state_dict(),
            "sched_student": self.sched_student.state_dict(),
            "sched_generator": self.sched_generator.state_dict(),
            "rng": rng_state(),
            "noise_rng": self.noise_rng.get_state(),
        }

    def load(self, path: Path) -> None:
        """Restore a ``state_dict()`` written by a run with the same settings."""
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != DISTILL_KIND:
            raise CheckpointError(f"{path} is not a ddad_fast distillation checkpoint")
        check_same_settings(ckpt["config"], asdict(self.cfg), RESUMABLE_CHANGES, path)
        self.student.load_state_dict(ckpt["model"]["state_dict"])
        self.generator.load_state_dict(ckpt["generator"])
        self.opt_student.load_state_dict(ckpt["opt_student"])
        self.opt_generator.load_state_dict(ckpt["opt_generator"])
        self.sched_student.load_state_dict(ckpt["sched_student"])
        self.sched_generator.load_state_dict(ckpt["sched_generator"])
        set_rng_state(ckpt["rng"])
        if ckpt["noise_rng"].numel() == self.noise_rng.get_state().numel():
            self.noise_rng.set_state(ckpt["noise_rng"])
        else:  # resumed on another device type: its generator keeps state in another form
            self.noise_rng.manual_seed(self.cfg.seed + ckpt["epoch"])
        self.epoch = ckpt["epoch"]
        self.best_acc = ckpt["best_acc"]


def build_trainer(cfg: DistillConfig, ops: DistillOps | None = None) -> DDADTrainer:
    """Load the data and the teacher, build student and generator, check they fit together."""
    if cfg.teacher_ckpt is None:
        raise ConfigError(
            "distillation needs a trained teacher: give teacher_ckpt (--teacher-ckpt)"
        )
    _, test_set, info = load_dataset(cfg.dataset, cfg.data_root, cfg.image_size)
    facts = {
        "num_classes": info.num_classes,
        "in_channels": info.in_channels,
        "image_size": info.image_size,
    }
    teacher, _ = load_model(cfg.teacher_ckpt, cfg.teacher, **facts)
    torch.manual_seed(cfg.seed)
    student = build_model(cfg.student, **facts)
    generator = Generator(cfg.nz, cfg.ngf, info.in_channels, info.image_size)
    return DDADTrainer(cfg, teacher, student, generator, test_set, info, ops)
