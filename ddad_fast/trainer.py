"""The DDAD loop: a generator against two discriminators (the teacher's BN statistics and the
student's discrepancy), and a student that imitates the teacher on generated images.

One loop for every backend: the backend only supplies the loss ops (``backends.DistillOps``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from .amp import fp32_output_layer
from .backends import DistillOps, get_backend
from .bn_hooks import BNStatsHooks
from .checkpoint import (
    remove_stale_temporaries,
    save_atomic,
)
from .data import DatasetInfo
from .distill_config import DistillConfig
from .distributed import (
    SINGLE,
    DistContext,
    any_rank,
    average_gradients,
    barrier,
    broadcast_state,
    global_bn_stats_loss,
    global_mean,
    per_rank_batch,
    rank_device,
    sync_batchnorm,
)
from .feature_hooks import PenultimateFeatures
from .guards import LossGuard, check_models_fit, first_non_finite
from .losses import activation_loss, logit_discrepancy, negative_entropy_loss, onehot_loss
from .metrics import MetricsLog, epoch_line
from .model_io import weights_sha256
from .optimizers import make_student_optimizer
from .replay import ReplayMemory
from .run_folder import lock_on_main, remove_previous_outputs
from .run_state import RunProgress, load_run_state, save_last, student_record
from .schedules import make_scheduler
from .signals import StopRequest
from .tasks import get_task


@dataclass
class DistillResult:
    """Scores in percent: top-1 accuracy (task cls) or mean IoU (task seg); nan for a run
    without evaluation data."""

    teacher_acc: float
    best_acc: float
    final_acc: float
    epochs: int
    seconds: float
    stopped: str | None = None  # the signal that stopped the run before its end, if one did
    iteration: int = 0  # iterations done in the unfinished epoch when stopped


class DDADTrainer:
    """Runs DDAD between a frozen teacher, a student and a generator.

    Each iteration: ``student_steps`` student steps minimising L1(t, s) on detached generated
    images, then one generator step minimising ``-L1(t, s) + lambda_bn * bn_loss`` (+ the optional
    DAFL terms); for segmentation (``task="seg"``) L1 is over logit maps and the adversarial term
    is ``-log(1 + L1)`` (``tasks.Task``). Evaluation, metrics and checkpoints once per epoch, by
    rank 0 alone.

    Under torchrun (``dist``) each rank draws its own noise, the student's and the generator's
    gradients are averaged across ranks after each backward, and the BN-statistics term matches
    the global batch (``distributed`` module), under either backend.

    ``test_set`` (None: no evaluation) is the held-out data scored each epoch; ``info`` gives the
    class count, channels and image size the models and the generator must agree on.
    """

    def __init__(
        self,
        cfg: DistillConfig,
        teacher: nn.Module,
        student: nn.Module,
        generator: nn.Module,
        test_set: Dataset | None,
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
        if cfg.sync_bn:
            student, generator = sync_batchnorm(student, generator, self.device, dist, self.ops)
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
        self.attach_teacher_hooks()
        broadcast_state(self.student, dist)  # every rank starts from rank 0's weights
        broadcast_state(self.generator, dist)
        fused = self.ops.fused_optimizers or None  # None: torch's default implementation
        self.opt_student = make_student_optimizer(cfg, self.student.parameters(), fused)
        self.opt_generator = torch.optim.Adam(
            self.generator.parameters(), lr=cfg.lr_generator, fused=fused
        )
        self._student_loss = self.ops.compiled(self.student_loss, self.device)
        self._generator_loss = self.ops.compiled(self.generator_loss, self.device)
        self._replayed_student_loss = self.ops.compiled(self.replayed_student_loss, self.device)
        # Each rank its own memory: it replays the samples its own steps made, as one process does.
        self.memory = ReplayMemory(cfg.replay) if cfg.replay > 0 else None
        schedule = cfg.schedule, cfg.epochs, cfg.step_every, cfg.milestones, cfg.step_gamma
        self.sched_student = make_scheduler(self.opt_student, *schedule)
        self.sched_generator = make_scheduler(self.opt_generator, *schedule)
        self.noise_rng = torch.Generator(device=self.device)
        self.noise_rng.manual_seed(self.noise_seed())
        self.guard = LossGuard(
            [self.student, self.generator], [self.opt_student, self.opt_generator], cfg.nan_retries
        )
        # Row i: iteration i's [student loss summed over its steps, L1, bn_loss, generator loss].
        self.losses = torch.zeros(cfg.epoch_iters, 4, device=self.device)
        self.out_dir = Path(cfg.out_dir)
        self.epoch = 0  # epochs finished
        self.iteration = 0  # iterations finished in the current epoch
        self.best_acc = -1.0

    def noise_seed(self, epoch: int = 0) -> int:
        """Rank r's noise seed: rank 0 draws what a single process draws."""
        return self.cfg.seed + epoch + (self.dist.rank << 32)

    # ----------------------------------------------------------------------------- one step each
    def noise(self) -> Tensor:
        """This rank's batch of generator inputs z: (batch_size / world_size, nz), on the device."""
        return torch.randn((self.batch, self.cfg.nz), device=self.device, generator=self.noise_rng)

    def student_loss(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """L1(teacher, student) on the images G(z) (generator and teacher without gradients).

        z: (B, nz). Returns (the scalar loss (fp32), the images (B, C, H, W), the teacher's
        outputs for them), the last two for the replay memory. The backend may compile this
        function.
        """
        with torch.no_grad(), self.ops.autocast(self.device):
            images = self.generator(z)
            t_logits = self.teacher_outputs(images)
        return self.replayed_student_loss(images, t_logits), images, t_logits

    def teacher_outputs(self, images: Tensor) -> Tensor:
        """The teacher on ``images`` (B, C, H, W): under the backend's autocast, or with
        ``teacher_fp32`` outside it, in fp32. Returns (B, K) logits or (B, K, H, W) maps."""
        if not self.cfg.teacher_fp32:
            return self.teacher(images)
        with torch.autocast(self.device.type, enabled=False):
            return self.teacher(images.float())

    def replayed_student_loss(self, images: Tensor, t_logits: Tensor) -> Tensor:
        """L1(teacher, student) on given images and the teacher's outputs for them: the student's
        forward alone. images: (B, C, H, W); t_logits: (B, K) or (B, K, H, W). Returns a scalar.
        The backend may compile this function."""
        with self.ops.autocast(self.device):
            s_logits = self.student(images)
        return self.discrepancy(t_logits, s_logits)

    def discrepancy(self, t_logits: Tensor, s_logits: Tensor) -> Tensor:
        """The backend's L1(t, s) over logits (N, K) or logit maps (N, K, H, W), of the logits
        less their mean over the K classes when ``center_logits`` is set. Returns a scalar."""
        return logit_discrepancy(
            t_logits, s_logits, self.cfg.center_logits, self.ops.l1_discrepancy
        )

    def generator_loss(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The generator's objective on G(z): ``-lambda_adv * L1(t, s) + lambda_bn * bn_loss``
        (+ the DAFL terms: one-hot, information entropy, activation), with ``-log(1 + L1)`` in
        place of ``-L1`` for segmentation.

        z: (B, nz). Returns (loss to minimise, detached [L1, bn_loss, loss], and, detached for the
        replay memory, the images and the teacher's outputs for them). The backend may compile
        this function.
        """
        cfg = self.cfg
        with self.ops.autocast(self.device):
            images = self.generator(z)
            if self.features is not None:
                self.features.start()
            if self.bn_hooks is not None:
                self.bn_hooks.start()
                t_logits = self.teacher_outputs(images)
                bn_loss = self.bn_hooks.collect()
            else:
                t_logits = self.teacher_outputs(images)
                bn_loss = torch.zeros((), device=z.device)
            s_logits = self.student(images)
        # the global batch's L1 (-log(1 + L1) is not linear in it; one rank: l1 itself)
        l1 = global_mean(self.discrepancy(t_logits, s_logits))
        loss = cfg.lambda_adv * self.task.adversarial_loss(l1) + cfg.lambda_bn * bn_loss
        if cfg.lambda_onehot > 0:
            loss = loss + cfg.lambda_onehot * onehot_loss(t_logits)
        if cfg.lambda_entropy > 0:
            loss = loss + cfg.lambda_entropy * negative_entropy_loss(t_logits, global_mean)
        if self.features is not None:
            loss = loss + cfg.lambda_activation * activation_loss(self.features.collect())
        parts = torch.stack([l1, bn_loss, loss]).detach()
        return loss, parts, images.detach(), t_logits.detach()

    def student_step(self, replay: bool = False) -> Tensor:
        """One optimiser step of the student on L1(teacher, student): over fresh generated images
        (added to the replay memory, if any), or with ``replay`` over a batch drawn from it."""
        self.ops.step_begin()
        if replay:
            loss = self._replayed_student_loss(*self.replayed_batch())
        else:
            loss, images, t_logits = self._student_loss(self.noise())
            self.remember(images, t_logits)
        self.opt_student.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.student.parameters(), self.dist)
        self.opt_student.step()
        return loss.detach()

    def replayed_batch(self) -> tuple[Tensor, Tensor]:
        """A batch for a replayed student step: images (B, C, H, W) drawn from the memory by the
        noise generator, and the teacher's stored outputs for them, (B, K) or (B, K, H, W)."""
        return self.memory.sample(self.batch, self.noise_rng)

    def generator_step(self) -> Tensor:
        """One Adam step of the generator; returns [L1, bn_loss, generator loss] (detached)."""
        self.ops.step_begin()
        # The student is a discriminator here: frozen, so no weight gradients are computed for it.
        self.student.requires_grad_(False)
        loss, parts, images, t_logits = self._generator_loss(self.noise())
        self.remember(images, t_logits)
        self.student.requires_grad_(True)
        self.opt_generator.zero_grad(set_to_none=True)
        loss.backward()
        average_gradients(self.generator.parameters(), self.dist)
        self.opt_generator.step()
        return parts

    def run_iteration(self, row: int) -> None:
        """One DDAD iteration: ``student_steps`` student steps (replayed ones after the first
        ``replay_fresh``, with ``--replay``), then one generator step; its losses go to
        ``self.losses[row]``, each step's copied out at once (under CUDA graphs the next step
        overwrites a step's outputs)."""
        self.losses[row, 0] = 0.0
        for k in range(self.cfg.student_steps):
            self.losses[row, 0] += self.student_step(self.replays(k))
        self.losses[row, 1:] = self.generator_step()

    def remember(self, images: Tensor, t_logits: Tensor) -> None:
        """Copy a step's images and teacher outputs into the replay memory, if there is one (at
        once: under CUDA graphs the next step overwrites them)."""
        if self.memory is not None:
            self.memory.add(images, t_logits)

    def replays(self, k: int) -> bool:
        """Whether student step ``k`` (0-based) of an iteration trains on replayed samples: the
        steps after the first ``replay_fresh``, once the memory holds a batch."""
        return (
            self.memory is not None and k >= self.cfg.replay_fresh and self.memory.holds(self.batch)
        )

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
            disable=not (cfg.progress and self.dist.is_main and sys.stderr.isatty()),
        )
        while self.iteration < cfg.epoch_iters:
            self.run_iteration(self.iteration)
            self.iteration += 1
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
                if self.memory is not None:  # it may hold the bad steps' samples
                    self.memory.clear()
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

    def attach_teacher_hooks(self) -> None:
        """The teacher's hooks for the BN term and DAFL's activation term, as the settings ask
        (inert outside the generator's step); ``fit`` detaches them when it returns."""
        cfg = self.cfg
        layer_loss = global_bn_stats_loss if self.dist.distributed else self.ops.bn_stats_loss
        self.bn_hooks = BNStatsHooks(self.teacher, layer_loss) if cfg.lambda_bn > 0 else None
        self.features = PenultimateFeatures(self.teacher) if cfg.lambda_activation > 0 else None
        self.teacher_hooked = True

    def detach_teacher_hooks(self) -> None:
        """Leave the teacher as it came: no hook of this trainer's on it."""
        for hooks in (self.bn_hooks, self.features):
            if hooks is not None:
                hooks.remove()
        self.teacher_hooked = False

    def fit(self, stop_after: int | None = None) -> DistillResult:
        """Train until ``cfg.epochs`` (resuming from ``out_dir/last.pt`` when ``cfg.resume``).

        ``stop_after`` ends this call after that many epochs, leaving a resumable ``last.pt``.
        A stop signal (SIGTERM, SIGUSR1, Ctrl-C: ``signals``) ends it at the next step boundary:
        ``last.pt`` then records the iteration inside the epoch, and ``--resume`` continues from
        exactly there. ``last.pt`` is also written before the first epoch, so a kill at any moment
        loses at most one epoch. The run holds ``out_dir``'s lock (``run_folder``); a fresh run
        changes nothing of a previous run's files before that first ``last.pt``, then removes the
        previous ``best.pt`` and ``student.pt`` and starts ``metrics.csv`` anew.

        With a ``test_set`` each epoch scores the student and ``best.pt`` keeps the best; without
        one ``metrics.csv`` holds the losses alone and ``student.pt`` the latest student (the same
        record, for ``ddad eval`` later), and the result's scores are nan.
        """
        if not self.teacher_hooked:  # a second call
            self.attach_teacher_hooks()
        try:
            return self._fit(stop_after)
        finally:
            self.detach_teacher_hooks()

    def _fit(self, stop_after: int | None) -> DistillResult:
        """``fit`` with the teacher's hooks attached."""
        cfg = self.cfg
        main = self.dist.is_main
        evaluating = self.test_set is not None
        data = self.test_set, self.device, self.info
        stopped = None
        with lock_on_main(self.out_dir, self.dist), StopRequest() as stop:
            if cfg.resume:
                progress = load_run_state(self, self.out_dir / "last.pt")
            else:
                progress = RunProgress(weights_sha256(self.teacher))
            teacher_acc = math.nan
            if main:  # the other ranks neither evaluate nor write
                remove_stale_temporaries(self.out_dir)
                if evaluating:
                    teacher_acc = self.task.score(self.teacher, *data)
            if not cfg.resume:
                save_last(self, progress)  # the run's first checkpoint
                if main:  # a teacher.pt there may be the teacher being distilled: kept
                    remove_previous_outputs(self.out_dir, keep=("teacher.pt",))
            log = None
            if main:
                log = MetricsLog(self.out_dir / "metrics.csv", self.epoch if cfg.resume else None)
            bar = tqdm(
                initial=self.epoch,
                total=cfg.epochs,
                desc="distill",
                disable=not (cfg.progress and main and sys.stderr.isatty()),
            )
            done = 0
            while self.epoch < cfg.epochs and (stop_after is None or done < stop_after):
                lr_student = self.opt_student.param_groups[0]["lr"]  # this epoch's rates
                lr_generator = self.opt_generator.param_groups[0]["lr"]
                losses = self.train_epoch(stop)
                if losses is None:
                    save_last(self, progress)
                    stopped = stop.signal_name or "a signal to another rank"
                    break
                self.sched_student.step()
                self.sched_generator.step()
                self.epoch += 1
                self.iteration = 0
                done += 1
                bar.update()
                if log is not None:
                    row = {"epoch": self.epoch, **{k: round(v, 6) for k, v in losses.items()}}
                    if evaluating:
                        acc = self.task.score(self.student, *data)
                        improved = acc > self.best_acc
                        self.best_acc = max(self.best_acc, acc)
                        progress.score = acc
                        score = self.task.score_name  # acc or miou
                        row[f"student_{score}"] = round(acc, 3)
                        row[f"best_{score}"] = round(self.best_acc, 3)
                        row[f"teacher_{score}"] = round(teacher_acc, 3)
                        bar.set_postfix({score: f"{acc:.2f}"})
                    row["lr_student"] = lr_student
                    row["lr_generator"] = lr_generator
                    row["seconds"] = round(progress.seconds(), 2)
                    row["cpu_seconds"] = round(progress.cpu_seconds(), 2)
                    log.append(row)
                    if cfg.progress and not sys.stderr.isatty():  # no bar: one line per epoch
                        print(epoch_line(row, cfg.epochs), flush=True)
                    if not evaluating:
                        record = student_record(self, progress.score)  # score: nan
                        save_atomic(record, self.out_dir / "student.pt")
                    elif improved:
                        save_atomic(student_record(self, acc), self.out_dir / "best.pt")
                save_last(self, progress)
                if any_rank(self.dist, stop.requested)[0] and self.epoch < cfg.epochs:
                    stopped = stop.signal_name or "a signal to another rank"
                    break
            bar.close()
        barrier(self.dist)
        return DistillResult(
            teacher_acc=teacher_acc,
            best_acc=self.best_acc if evaluating else math.nan,
            final_acc=progress.score,
            epochs=self.epoch,
            seconds=progress.seconds(),
            stopped=stopped,
            iteration=self.iteration,
        )
