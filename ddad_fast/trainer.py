"""The DDAD loop: a generator against two discriminators (the teacher's BN statistics and the
student's discrepancy), and a student that imitates the teacher on generated images.

One loop for every backend: the backend only supplies the loss ops (``backends.DistillOps``).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from .amp import fp32_output_layer
from .backends import DistillOps, get_backend
from .bn_hooks import BNStatsHooks
from .checkpoint import (
    check_same_settings,
    load_checkpoint,
    load_state_strict,
    remove_stale_temporaries,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .data import DatasetInfo, load_dataset
from .distributed import (
    SINGLE,
    DistContext,
    any_rank,
    barrier,
    gather_to_all,
    global_bn_stats_loss,
    init_distributed,
    per_rank_batch,
    rank_device,
    wrap_ddp,
)
from .errors import CheckpointError, ConfigError
from .feature_hooks import PenultimateFeatures
from .guards import LossGuard, check_models_fit, first_non_finite
from .losses import activation_loss, logit_discrepancy, negative_entropy_loss, onehot_loss
from .metrics import MetricsLog
from .model_io import load_model, model_record
from .models import build_model
from .optimizers import check_optimizer, make_optimizer
from .schedules import make_scheduler
from .signals import StopRequest
from .tasks import check_task, get_task

DISTILL_KIND = "ddad_fast.distill"

# Settings that may change between a run and its resumption; every other one must match.
RESUMABLE_CHANGES = frozenset(
    {"resume", "device", "backend", "out_dir", "data_root", "progress"}
    | {"check_every", "nan_retries"}
)


def settings_before(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The value each setting had before it existed, for checkpoints written without it: its
    default, except ``seg_generator_bn``, which seg runs had always on before it became a setting
    (resuming one needs ``--seg-generator-bn``)."""
    before = asdict(DistillConfig())
    before["seg_generator_bn"] = ckpt["config"].get("task") == "seg"
    return before


@dataclass
class DistillConfig:
    """Every setting of a DDAD run. Defaults follow the DFAD protocol on CIFAR-10."""

    teacher_ckpt: str | None = None  # teacher weights (our teacher.pt or a published state_dict)
    teacher: str | None = None  # registry name (default: the one recorded in teacher_ckpt)
    task: str = "cls"  # cls (classification) or seg (segmentation: mIoU, log(1 + L1), GeneratorB)
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
    batch_size: int = 256  # the global batch: torchrun's ranks draw an equal share each
    nz: int = 256  # noise dimension
    ngf: int = 64  # generator width
    student_optimizer: str = "sgd"  # sgd (with momentum) or adam
    lr_student: float = 0.1
    momentum: float = 0.9  # SGD's
    weight_decay: float = 5e-4  # the student's
    lr_generator: float = 1e-3  # Adam
    schedule: str = "step"  # step (x0.1 at 20% and 40%: DFAD's --scheduler), none or cosine
    step_every: int = 0  # step schedule: x0.1 every N epochs instead (DFAD's seg scripts: 100)
    lambda_bn: float = 1.0  # weight of the teacher's BN-statistics term (0: plain DFAD)
    lambda_onehot: float = 0.0  # DAFL one-hot term (off by default)
    lambda_entropy: float = 0.0  # DAFL information-entropy term (off by default)
    lambda_adv: float = 1.0  # generator's adversarial-term weight (0: it ignores the student)
    lambda_activation: float = 0.0  # DAFL activation term (off by default)
    center_logits: bool = False  # L1 between logits less each pixel's mean over classes
    seg_generator_bn: bool = False  # seg: affine-free BN after GeneratorB's tanh (DFAD has none)
    check_every: int = 10  # iterations between finiteness checks (one host sync each)
    nan_retries: int = 3  # rollbacks in a row to the last check before a non-finite loss ends it
    resume: bool = False  # continue from out_dir/last.pt
    progress: bool = True  # tqdm bars

    def validate(self) -> None:
        """Raise ConfigError on settings that cannot work."""
        for name in (
            "epochs",
            "epoch_iters",
            "student_steps",
            "batch_size",
            "nz",
            "ngf",
            "check_every",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in (
            "lr_student",
            "lr_generator",
            "lambda_bn",
            "lambda_onehot",
            "lambda_entropy",
            "lambda_adv",
            "lambda_activation",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BN statistics need a batch")
        check_optimizer("student_optimizer", self.student_optimizer)
        if self.nan_retries < 0:
            raise ConfigError(f"nan_retries must be non-negative, got {self.nan_retries}")
        get_task(self.task)
        if self.seg_generator_bn and self.task != "seg":
            raise ConfigError(
                "seg_generator_bn applies to --task seg only (the classification generator, "
                "DFAD's GeneratorA, always ends with its affine-free BN)"
            )


@dataclass
class DistillResult:
    """Scores in percent: top-1 accuracy (task cls) or mean IoU (task seg)."""

    teacher_acc: float
    best_acc: float
    final_acc: float
    epochs: int
    seconds: float
    stopped: str | None = None  # the signal that stopped the run before its end, if one did
    iteration: int = 0  # iterations done in the unfinished epoch when stopped


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where present, else CPU; anything else is passed to torch.device."""
    return rank_device(name, SINGLE)


class DDADTrainer:
    """Runs DDAD between a frozen teacher, a student and a generator.

    Each iteration: ``student_steps`` student steps minimising L1(t, s) on detached generated
    images, then one generator step minimising ``-L1(t, s) + lambda_bn * bn_loss`` (+ the optional
    DAFL terms); for segmentation (``task="seg"``) L1 is over logit maps and the adversarial term
    is ``-log(1 + L1)`` (``tasks.Task``). Evaluation, metrics and checkpoints once per epoch, by
    rank 0 alone.

    Under torchrun (``dist``) the student and generator are DDP-wrapped, each rank draws its own
    noise and the BN-statistics term matches the global batch (``distributed`` module).
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
        dist: DistContext = SINGLE,
    ):
        cfg.validate()
        self.cfg = cfg
        self.dist = dist
        self.batch = per_rank_batch(cfg.batch_size, dist)
        self.device = rank_device(cfg.device, dist)
        self.ops = ops or get_backend(cfg.backend)
        self.task = get_task(cfg.task)
        if dist.distributed and self.ops.compile:
            raise ConfigError(
                f"--backend {self.ops.name} compiles the loss functions with fullgraph=True, which "
                "cannot trace DistributedDataParallel's forward; under torchrun use --backend eager"
            )
        # One input channel: strides fit NCHW and NHWC alike, and on CUDA torch.compile's layout
        # for the first convolution's output then differs from cuDNN's (its stride assertion
        # fails); such models stay in NCHW.
        nhwc = self.ops.channels_last and info.in_channels > 1
        fmt = torch.channels_last if nhwc else torch.preserve_format
        self.teacher = teacher.to(self.device, memory_format=fmt).eval().requires_grad_(False)
        self.student = student.to(self.device, memory_format=fmt).train()
        self.generator = generator.to(self.device, memory_format=fmt).train()
        check_models_fit(
            self.teacher,
            self.student,
            self.generator,
            info.num_classes,
            info.in_channels,
            info.image_size,
            cfg.nz,
            self.device,
            dense=self.task.dense,
        )
        if self.ops.amp_dtype(self.device) is not None:
            # Logits in fp32 (amp module): in bf16 many t - s round to 0, leaving no gradient.
            for model in (self.teacher, self.student):
                fp32_output_layer(model, self.task.dense)
        self.test_set = test_set
        self.info = info
        layer_loss = global_bn_stats_loss if dist.distributed else self.ops.bn_stats_loss
        self.bn_hooks = BNStatsHooks(self.teacher, layer_loss) if cfg.lambda_bn > 0 else None
        self.features = PenultimateFeatures(self.teacher) if cfg.lambda_activation > 0 else None
        # The wrappers share the modules' parameters; they are called only where gradients must
        # be averaged across ranks (the student in its loss, the generator in its loss).
        self.student_ddp = wrap_ddp(self.student, dist, self.device)
        self.generator_ddp = wrap_ddp(self.generator, dist, self.device)
        fused = self.ops.fused_optimizers or None  # None: torch's default implementation
        self.opt_student = make_student_optimizer(cfg, self.student.parameters(), fused)
        self.opt_generator = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr_generator, fused=fused
        )
        self._student_loss = self.ops.compiled(self.student_loss, self.device)
        self._generator_loss = self.ops.compiled(self.generator_loss, self.device)
        schedule = cfg.schedule, cfg.epochs, cfg.step_every
        self.sched_student = make_scheduler(self.opt_student, *schedule)
        self.sched_generator = make_scheduler(self.opt_generator, *schedule)
        self.noise_rng = torch.Generator(device=self.device)
        self.noise_rng.manual_seed(self._noise_seed())
        self.guard = LossGuard(
            [self.student, self.generator], [self.opt_student, self.opt_generator], cfg.nan_retries
        )
        # Row i: iteration i's [student loss summed over its steps, L1, bn_loss, generator loss].
        self.losses = torch.zeros(cfg.epoch_iters, 4, device=self.device)
        self.out_dir = Path(cfg.out_dir)
        self.epoch = 0  # epochs finished
        self.iteration = 0  # iterations finished in the current epoch
        self.best_acc = -1.0

    def _noise_seed(self, epoch: int = 0) -> int:
        """Rank r's noise seed: rank 0 draws what a single process draws."""
        return self.cfg.seed + epoch + (self.dist.rank << 32)

    # ----------------------------------------------------------------------------- one step each
    def noise(self) -> Tensor:
        """This rank's batch of generator inputs z: (batch_size / world_size, nz), on the device."""
        return torch.randn((self.batch, self.cfg.nz), device=self.device, generator=self.noise_rng)

    def student_loss(self, z: Tensor) -> Tensor:
        """L1(teacher, student) on the images G(z) (generator and teacher without gradients).

        z: (B, nz). Returns a scalar (fp32). The backend may compile this function.
        """
        with torch.no_grad(), self.ops.autocast(self.device):
            images = self.generator(z)
            t_logits = self.teacher(images)
        with self.ops.autocast(self.device):
            s_logits = self.student_ddp(images)  # the student itself on one process
        return self.discrepancy(t_logits, s_logits)

    def discrepancy(self, t_logits: Tensor, s_logits: Tensor) -> Tensor:
        """The backend's L1(t, s) over logits (N, K) or logit maps (N, K, H, W), of the logits
        less their mean over the K classes when ``center_logits`` is set. Returns a scalar."""
        return logit_discrepancy(
            t_logits, s_logits, self.cfg.center_logits, self.ops.l1_discrepancy
        )

    def generator_loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The generator's objective on G(z): ``-lambda_adv * L1(t, s) + lambda_bn * bn_loss``
        (+ the DAFL terms: one-hot, information entropy, activation), with ``-log(1 + L1)`` in
        place of ``-L1`` for segmentation.

        z: (B, nz). Returns (loss to minimise, detached [L1, bn_loss, loss]). The backend may
        compile this function.
        """
        cfg = self.cfg
        with self.ops.autocast(self.device):
            images = self.generator_ddp(z)  # the generator itself on one process
            if self.features is not None:
                self.features.start()
            if self.bn_hooks is not None:
                self.bn_hooks.start()
                t_logits = self.teacher(images)
                bn_loss = self.bn_hooks.collect()
            else:
                t_logits = self.teacher(images)
                bn_loss = torch.zeros((), device=z.device)
            s_logits = self.student(images)
        l1 = self.discrepancy(t_logits, s_logits)
        loss = cfg.lambda_adv * self.task.adversarial_loss(l1) + cfg.lambda_bn * bn_loss
        if cfg.lambda_onehot > 0:
            loss = loss + cfg.lambda_onehot * onehot_loss(t_logits)
        if cfg.lambda_entropy > 0:
            loss = loss + cfg.lambda_entropy * negative_entropy_loss(t_logits)
        if self.features is not None:
            loss = loss + cfg.lambda_activation * activation_loss(self.features.collect())
        return loss, torch.stack([l1, bn_loss, loss]).detach()

    def student_step(self) -> Tensor:
        """One optimiser step of the student on L1(teacher, student) over fresh generated images."""
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
    def train_epoch(self, stop: StopRequest | None = None) -> dict[str, float] | None:
        """Iterations ``self.iteration`` to ``epoch_iters``; returns the epoch's mean losses.

        Each iteration's losses go to a row of ``self.losses`` on the device. Every
        ``check_every`` iterations, and at the epoch's end, the new rows are read on the host (the
        only sync): a non-finite one rolls the models and optimisers back to the previous check
        (``LossGuard``). Returns None, between two iterations, when a stop was requested: read at
        every iteration on one process, at the checks across ranks.
        """
        cfg = self.cfg
        checked = self.iteration
        self.guard.save(checked)
        bar = tqdm(
            total=cfg.epoch_iters,
            initial=checked,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not (cfg.progress and self.dist.is_main),
        )
        while self.iteration < cfg.epoch_iters:
            it = self.iteration
            # Each step's losses are copied out at once: under CUDA graphs a step's outputs are
            # overwritten by the next one.
            self.losses[it, 0] = 0.0
            for _ in range(cfg.student_steps):
                self.losses[it, 0] += self.student_step()
            self.losses[it, 1:] = self.generator_step()
            self.iteration = it + 1
            bar.update()
            due = self.iteration - checked >= cfg.check_every or self.iteration == cfg.epoch_iters
            # One process reads its stop flag at every step boundary; ranks agree at the checks.
            stop_here = stop is not None and stop.requested and not self.dist.distributed
            if not (due or stop_here):
                continue
            rows = self.losses[checked : self.iteration].cpu()  # the check's one host sync
            bad = first_non_finite(rows)
            bad_any, stop_any = any_rank(
                self.dist, bad is not None, stop is not None and stop.requested
            )
            if bad_any:
                what = self._describe_non_finite(checked, bad, rows)
                self.iteration = checked = self.guard.restore(what)
                if self.dist.is_main:
                    print(
                        f"ddad: warning: {what}; rolled back to step {self._step(checked)} "
                        f"(retry {self.guard.retries} of {cfg.nan_retries})",
                        file=sys.stderr,
                    )
                bar.n = checked
                continue
            checked = self.iteration
            bar.set_postfix(l1=f"{rows[:, 1].mean().item():.4f}")
            if self.iteration < cfg.epoch_iters:
                if stop_any:
                    bar.close()
                    return None
                self.guard.save(checked)
        bar.close()
        means = self.losses.mean(dim=0)
        means[0] = means[0] / cfg.student_steps
        student_mean, l1, bn, gen = means.tolist()
        return {
            "loss_student": student_mean,
            "l1_generator": l1,
            "bn_loss": bn,
            "loss_generator": gen,
        }

    def _step(self, iteration: int) -> int:
        """The global generator-step number of the ``iteration``-th iteration of this epoch."""
        return self.epoch * self.cfg.epoch_iters + iteration

    def _describe_non_finite(self, checked: int, bad: int | None, rows: Tensor) -> str:
        if bad is None:
            return (
                f"a non-finite loss on another rank between steps {self._step(checked) + 1} and "
                f"{self._step(self.iteration)}"
            )
        student, l1, bn, gen = rows[bad].tolist()
        it = checked + bad + 1
        return (
            f"non-finite loss at step {self._step(it)} (epoch {self.epoch + 1}, iteration {it}): "
            f"student loss {student / self.cfg.student_steps:.4g}, generator loss {gen:.4g} "
            f"(L1 {l1:.4g}, BN {bn:.4g})"
        )

    def fit(self, stop_after: int | None = None) -> DistillResult:
        """Train until ``cfg.epochs`` (resuming from ``out_dir/last.pt`` when ``cfg.resume``).

        ``stop_after`` ends this call after that many epochs, leaving a resumable ``last.pt``.
        A SIGTERM (or SIGUSR1) ends it at the next step boundary: ``last.pt`` then records the
        iteration inside the epoch, and ``--resume`` continues from exactly there. ``last.pt`` is
        also written before the first epoch, so a kill at any moment loses at most one epoch.
        """
        cfg = self.cfg
        main = self.dist.is_main
        if cfg.resume:
            self.load(self.out_dir / "last.pt")
        if main:
            remove_stale_temporaries(self.out_dir)
        log = None
        teacher_acc = math.nan
        if main:  # the other ranks neither evaluate nor write
            log = MetricsLog(self.out_dir / "metrics.csv", self.epoch if cfg.resume else None)
            teacher_acc = self.task.score(self.teacher, self.test_set, self.device, self.info)
        if not cfg.resume:
            self.save_last()
        start = time.perf_counter()
        acc = math.nan
        stopped = None
        bar = tqdm(
            initial=self.epoch,
            total=cfg.epochs,
            desc="distill",
            disable=not (cfg.progress and main),
        )
        with StopRequest() as stop:
            done = 0
            while self.epoch < cfg.epochs and (stop_after is None or done < stop_after):
                losses = self.train_epoch(stop)
                if losses is None:
                    self.save_last()
                    stopped = stop.signal_name or "a signal to another rank"
                    break
                self.sched_student.step()
                self.sched_generator.step()
                self.epoch += 1
                self.iteration = 0
                done += 1
                bar.update()
                if log is not None:
                    acc = self.task.score(self.student, self.test_set, self.device, self.info)
                    improved = acc > self.best_acc
                    self.best_acc = max(self.best_acc, acc)
                    score = self.task.score_name  # acc or miou
                    log.append(
                        {
                            "epoch": self.epoch,
                            **{k: round(v, 6) for k, v in losses.items()},
                            f"student_{score}": round(acc, 3),
                            f"best_{score}": round(self.best_acc, 3),
                            f"teacher_{score}": round(teacher_acc, 3),
                            "lr_student": self.opt_student.param_groups[0]["lr"],
                            "lr_generator": self.opt_generator.param_groups[0]["lr"],
                            "seconds": round(time.perf_counter() - start, 2),
                        }
                    )
                    if improved:
                        save_atomic(self._student_record(acc), self.out_dir / "best.pt")
                self.save_last()
                if any_rank(self.dist, stop.requested)[0] and self.epoch < cfg.epochs:
                    stopped = stop.signal_name or "a signal to another rank"
                    break
        bar.close()
        if self.bn_hooks is not None:
            self.bn_hooks.remove()
        if self.features is not None:
            self.features.remove()
        barrier(self.dist)
        return DistillResult(
            teacher_acc=teacher_acc,
            best_acc=self.best_acc,
            final_acc=acc,
            epochs=self.epoch,
            seconds=time.perf_counter() - start,
            stopped=stopped,
            iteration=self.iteration,
        )

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

    def save_last(self) -> None:
        """Write ``out_dir/last.pt`` (rank 0), with every rank's noise state; all ranks call it."""
        noise_states = gather_to_all(self.dist, self.noise_rng.get_state())
        if self.dist.is_main:
            save_atomic(self.state_dict(noise_states), self.out_dir / "last.pt")

    def state_dict(self, noise_states: list[Tensor] | None = None) -> dict:
        """Everything needed to continue exactly: models, optimisers, schedules, RNGs, step.

        ``noise_states``: every rank's noise-generator state, in rank order (default: this
        process's alone). ``iteration`` > 0 marks a checkpoint written inside an epoch; ``losses``
        then holds that epoch's rows so far.
        """
        if noise_states is None:
            noise_states = [self.noise_rng.get_state()]
        return {
            "kind": DISTILL_KIND,
            "config": asdict(self.cfg),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "losses": self.losses[: self.iteration].cpu(),
            "best_acc": self.best_acc,
            "model": self._student_record(self.best_acc),
            "generator": self.generator.state_dict(),
            "opt_student": self.opt_student.state_dict(),
            "opt_generator": self.opt_generator.state_dict(),
            "sched_student": self.sched_student.state_dict(),
            "sched_generator": self.sched_generator.state_dict(),
            "rng": rng_state(),
            "noise_rng": noise_states[0],
            "noise_rngs": noise_states,
        }

    def load(self, path: Path) -> None:
        """Restore a ``state_dict()`` written by a run with the same settings.

        Under another world size (or device type) each rank's noise is reseeded from the seed, the
        epoch and its rank: the run goes on, with other noise than an uninterrupted one.
        """
        ckpt = load_checkpoint(path)
        if ckpt.get("kind") != DISTILL_KIND:
            raise CheckpointError(f"{path} is not a ddad_fast distillation checkpoint")
        check_same_settings(
            ckpt["config"], asdict(self.cfg), RESUMABLE_CHANGES, path, settings_before(ckpt)
        )
        try:
            load_state_strict(self.student, ckpt["model"]["state_dict"], path)
            load_state_strict(self.generator, ckpt["generator"], path)
            try:
                self.opt_student.load_state_dict(ckpt["opt_student"])
                self.opt_generator.load_state_dict(ckpt["opt_generator"])
            except (ValueError, RuntimeError) as e:
                raise CheckpointError(f"{path}: its optimiser state does not fit ({e})") from None
            self.sched_student.load_state_dict(ckpt["sched_student"])
            self.sched_generator.load_state_dict(ckpt["sched_generator"])
            set_rng_state(ckpt["rng"])
            states = ckpt.get("noise_rngs", [ckpt["noise_rng"]])
            epoch, iteration = ckpt["epoch"], ckpt.get("iteration", 0)
            if iteration:
                self.losses[:iteration] = ckpt["losses"].to(self.device)
        except KeyError as e:
            raise CheckpointError(f"checkpoint {path} is missing its {e} entry") from None
        own = self.noise_rng.get_state()
        if len(states) == self.dist.world_size and states[self.dist.rank].numel() == own.numel():
            self.noise_rng.set_state(states[self.dist.rank])
        else:  # another world size, or another device type: its generator keeps another state
            self.noise_rng.manual_seed(self._noise_seed(epoch))
        self.epoch, self.iteration = epoch, iteration
        self.best_acc = ckpt["best_acc"]


def make_student_optimizer(
    cfg: DistillConfig, params: Iterable[nn.Parameter], fused: bool | None
) -> torch.optim.Optimizer:
    """The student's optimiser: ``student_optimizer`` at ``lr_student`` with ``momentum`` (SGD)
    and ``weight_decay``; ``fused`` as torch's optimisers take it (None: their default)."""
    return make_optimizer(
        cfg.student_optimizer, params, cfg.lr_student, cfg.momentum, cfg.weight_decay, fused
    )


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
