"""``ddad demo``: the main job on the embedded default.

A small CNN teacher is trained on scikit-learn's real 8x8 digits (or reused from the cache), then a
smaller student is distilled from it with DDAD from noise alone (the digits' training images are
never shown to it), and both are evaluated on the real held-out test split.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .builder import build_trainer
from .checkpoint import run_of
from .distill_config import RESUMABLE_CHANGES as DISTILL_MAY_CHANGE
from .distill_config import DistillConfig
from .errors import ConfigError
from .run_folder import RUN_FILES
from .run_plots import write_run_plots
from .run_state import DISTILL_KIND
from .signals import Stopped
from .teacher import RESUMABLE_CHANGES as TEACHER_MAY_CHANGE
from .teacher import TEACHER_TRAIN_KIND, TeacherConfig, cached_teacher, train_teacher
from .trainer import DDADTrainer, DistillResult

DEMO_TEACHER = TeacherConfig(
    model="smallcnn",
    dataset="digits",
    epochs=60,
    batch_size=64,
    lr=0.05,
    schedule="cosine",
)

DEMO_DISTILL = DistillConfig(
    student="tinycnn",
    dataset="digits",
    epochs=20,
    epoch_iters=25,
    batch_size=128,
    nz=64,
    ngf=32,
    schedule="cosine",
    lambda_bn=1.0,
)


def check_demo_folder(
    folder: Path, kind: str, cfg: TeacherConfig | DistillConfig, may_change: frozenset[str]
) -> None:
    """Raise ConfigError when ``folder`` holds a run other than this demo's own earlier one (a
    ``kind`` run whose settings are ``cfg``'s but for ``may_change``): the demo replaces its own
    runs, as ``make demo`` run again should, and nobody else's."""
    previous = [name for name in RUN_FILES if (folder / name).exists()]
    if previous and run_of(folder / "last.pt", kind, cfg, may_change) is None:
        raise ConfigError(
            f"{folder} holds a run ({', '.join(previous)}) that is not this demo's, which the demo "
            "would replace: give the demo another --out-dir"
        )


def distill_with_cached_teacher(
    teacher_cfg: TeacherConfig, distill_cfg: DistillConfig, out: Path, tag: str
) -> tuple[DDADTrainer, DistillResult]:
    """Train the teacher into ``out/teacher`` (or reuse the one a finished run with the same
    settings left there), then distill ``distill_cfg``'s student from it into ``out``.

    ``teacher_cfg`` and ``distill_cfg`` already carry the device and progress settings; ``tag``
    prefixes the message printed when the teacher is reused. Returns the trainer and its result;
    a stop signal raises ``Stopped`` with the line that says how to go on.
    """
    teacher_cfg = dataclasses.replace(teacher_cfg, out_dir=str(out / "teacher"))
    cfg = dataclasses.replace(
        distill_cfg, teacher_ckpt=str(out / "teacher" / "teacher.pt"), out_dir=str(out)
    )
    check_demo_folder(out, DISTILL_KIND, cfg, DISTILL_MAY_CHANGE | {"teacher_ckpt"})
    check_demo_folder(out / "teacher", TEACHER_TRAIN_KIND, teacher_cfg, TEACHER_MAY_CHANGE)
    teacher_ckpt = cached_teacher(teacher_cfg)
    again = "run the same command again: a finished teacher is reused, the rest starts over"
    if teacher_ckpt is None:
        try:
            train_teacher(teacher_cfg)
        except Stopped as e:  # the teacher's own line would say --resume, which demo has not
            raise Stopped(e.signal_name, f"{tag}: stopped by {e.signal_name}; {again}") from None
    else:
        print(f"{tag}: reusing the cached teacher {teacher_ckpt}")
    trainer = build_trainer(cfg)
    result = trainer.fit()
    if result.stopped:
        raise Stopped(result.stopped, f"{tag}: stopped by {result.stopped}; {again}")
    return trainer, result


def run_demo(out_dir: str = "runs/demo", device: str = "auto", progress: bool = True) -> str:
    """Train/reuse the digits teacher, distill the student, write plots; return the summary line.

    Writes under ``out_dir``: teacher/ (teacher.pt, metrics.csv), metrics.csv, best.pt, last.pt,
    samples.png (generated images), curves.png (accuracy and losses per epoch).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    trainer, result = distill_with_cached_teacher(
        dataclasses.replace(DEMO_TEACHER, device=device, progress=progress),
        dataclasses.replace(DEMO_DISTILL, device=device, progress=progress),
        out,
        "demo",
    )
    write_run_plots(out, trainer.generator, trainer.noise(), trainer.info.mean, trainer.info.std)
    seconds = time.perf_counter() - start
    print(f"demo: student best {result.best_acc:.2f}%, outputs in {out}/")
    line = (
        f"demo: teacher {result.teacher_acc:.2f}% student {result.final_acc:.2f}% "
        f"data-free, {seconds:.0f}s"
    )
    print(line)
    return line
