"""A distillation run's saved state: ``last.pt`` (everything needed to continue exactly) and the
student's record that ``best.pt`` (or ``student.pt``) and ``last.pt`` hold, written and read for
``DDADTrainer``."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import Tensor

from .checkpoint import (
    check_same_settings,
    load_checkpoint,
    load_state_strict,
    resume_may_change,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .distill_config import RESUMABLE_CHANGES, settings_before
from .distributed import gather_to_all
from .errors import CheckpointError
from .model_io import model_record, weights_sha256
from .optimizers import load_optimizer_state

if TYPE_CHECKING:
    from .trainer import DDADTrainer

DISTILL_KIND = "ddad_fast.distill"


@dataclass
class RunProgress:
    """What ``last.pt`` records of a run beside its models, optimisers and RNGs."""

    teacher_sha256: str  # the teacher's weights (model_io.weights_sha256): resuming checks them
    score: float = math.nan  # the student's last evaluated test score (nan before epoch 1)
    seconds_before: float = 0.0  # seconds the run took in the processes before this one
    cpu_seconds_before: float = 0.0  # CPU seconds of the processes before this one
    started: float = field(default_factory=time.perf_counter)  # this process's clock at start
    cpu_started: float = field(default_factory=time.process_time)  # its CPU clock at start

    def seconds(self) -> float:
        """Seconds the run has taken so far, across resumptions."""
        return self.seconds_before + time.perf_counter() - self.started

    def cpu_seconds(self) -> float:
        """CPU seconds of this process (all its threads) so far, across resumptions: with one
        torch thread, the wall time the run would take alone on a core, whatever else runs."""
        return self.cpu_seconds_before + time.process_time() - self.cpu_started


def student_record(trainer: DDADTrainer, acc: float) -> dict:
    """The student's record (``model_io.model_record``) at test score ``acc`` (nan: not
    evaluated), under the name ``cfg.student``: a registry name, or a ``class_path``."""
    info = trainer.info
    return model_record(
        trainer.cfg.student,
        trainer.student,
        info.num_classes,
        info.in_channels,
        info.image_size,
        dataset=info.name,
        test_acc=acc,
        epoch=trainer.epoch,
    )


def save_last(trainer: DDADTrainer, progress: RunProgress) -> None:
    """Write ``out_dir/last.pt`` (rank 0), with every rank's noise state; all ranks call it."""
    noise_states = gather_to_all(trainer.dist, trainer.noise_rng.get_state())
    if trainer.dist.is_main:
        state = run_state_dict(trainer, progress, noise_states)
        save_atomic(state, trainer.out_dir / "last.pt")


def run_state_dict(
    trainer: DDADTrainer, progress: RunProgress, noise_states: list[Tensor] | None = None
) -> dict:
    """Everything needed to continue exactly: models, optimisers, schedules, RNGs, step, and
    ``progress`` (the student's record holds the last evaluated score beside the last weights).

    ``noise_states``: every rank's noise-generator state, in rank order (default: this
    process's alone). ``iteration`` > 0 marks a checkpoint written inside an epoch; ``losses``
    then holds that epoch's rows so far.
    """
    if noise_states is None:
        noise_states = [trainer.noise_rng.get_state()]
    return {
        "kind": DISTILL_KIND,
        "config": asdict(trainer.cfg),
        "epoch": trainer.epoch,
        "iteration": trainer.iteration,
        "losses": trainer.losses[: trainer.iteration].cpu(),
        "best_acc": trainer.best_acc,
        "model": student_record(trainer, progress.score),
        "teacher_sha256": progress.teacher_sha256,
        "seconds": progress.seconds(),
        "cpu_seconds": progress.cpu_seconds(),
        "generator": trainer.generator.state_dict(),
        "opt_student": trainer.opt_student.state_dict(),
        "opt_generator": trainer.opt_generator.state_dict(),
        "sched_student": trainer.sched_student.state_dict(),
        "sched_generator": trainer.sched_generator.state_dict(),
        "rng": rng_state(),
        "noise_rng": noise_states[0],
        "noise_rngs": noise_states,
    }


def load_run_state(trainer: DDADTrainer, path: Path) -> RunProgress:
    """Restore into ``trainer`` a ``run_state_dict`` written by a run with the same settings and
    the same teacher weights (wherever its file lies now); returns the run's progress.

    A finished run may resume with more ``epochs``, which extends it. Under another world size
    (or device type) each rank's noise is reseeded from the seed, the epoch and its rank: the run
    goes on, with other noise than an uninterrupted one.
    """
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != DISTILL_KIND:
        raise CheckpointError(f"{path} is not a ddad_fast distillation checkpoint")
    teacher_sha256 = weights_sha256(trainer.teacher)
    saved_sha256 = ckpt.get("teacher_sha256")
    if saved_sha256 is not None and saved_sha256 != teacher_sha256:
        raise CheckpointError(
            f"cannot resume from {path}: its run distilled another teacher (weights hash "
            f"{saved_sha256[:12]}) than {trainer.cfg.teacher_ckpt} (hash {teacher_sha256[:12]})"
        )
    # The hash identifies the teacher wherever it lies; a last.pt written before it was recorded
    # has only the teacher's path, which must then be the same.
    may_change = RESUMABLE_CHANGES | ({"teacher_ckpt"} if saved_sha256 else set())
    may_change = resume_may_change(
        may_change, ckpt["config"], ckpt.get("epoch", 0), trainer.cfg.epochs
    )
    check_same_settings(
        ckpt["config"], asdict(trainer.cfg), may_change, path, settings_before(ckpt)
    )
    try:
        load_state_strict(trainer.student, ckpt["model"]["state_dict"], path)
        load_state_strict(trainer.generator, ckpt["generator"], path)
        try:
            load_optimizer_state(trainer.opt_student, ckpt["opt_student"])
            load_optimizer_state(trainer.opt_generator, ckpt["opt_generator"])
        except (ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: its optimiser state does not fit ({e})") from None
        trainer.sched_student.load_state_dict(ckpt["sched_student"])
        trainer.sched_generator.load_state_dict(ckpt["sched_generator"])
        set_rng_state(ckpt["rng"])
        states = ckpt.get("noise_rngs", [ckpt["noise_rng"]])
        epoch, iteration = ckpt["epoch"], ckpt.get("iteration", 0)
        if iteration:
            trainer.losses[:iteration] = ckpt["losses"].to(trainer.device)
        progress = RunProgress(
            teacher_sha256,
            ckpt["model"].get("test_acc", math.nan),
            ckpt.get("seconds", 0.0),
            ckpt.get("cpu_seconds", 0.0),
        )
    except KeyError as e:
        raise CheckpointError(f"checkpoint {path} is missing its {e} entry") from None
    own = trainer.noise_rng.get_state()
    if len(states) == trainer.dist.world_size and states[trainer.dist.rank].numel() == own.numel():
        trainer.noise_rng.set_state(states[trainer.dist.rank])
    else:  # another world size, or another device type: its generator keeps another state
        trainer.noise_rng.manual_seed(trainer.noise_seed(epoch))
    trainer.epoch, trainer.iteration = epoch, iteration
    trainer.best_acc = ckpt["best_acc"]
    return progress
