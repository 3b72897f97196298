"""The accuracy study: DDAD against its ablations, data-free baselines and real-data references.

From one ``StudyConfig``, for each dataset: train (or reuse) the teacher, then run every method on
that teacher, with the same student, settings and step budget, for every seed. The data-free
methods (rows 1-4) are ``DDADTrainer`` runs that differ only in ``DistillConfig`` overrides (the
generator's objective); the two references (row 5) train the same student on the real training
images, with the teacher's logits (KD) or with the labels (scratch).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ddad_fast.batching import accuracy, iterate_batches
from ddad_fast.builder import build_trainer
from ddad_fast.data import load_dataset, train_augment
from ddad_fast.distill_config import DistillConfig
from ddad_fast.distributed import resolve_device
from ddad_fast.errors import ConfigError
from ddad_fast.losses import logit_discrepancy
from ddad_fast.metrics import read_metrics
from ddad_fast.model_io import load_model
from ddad_fast.models import build_model
from ddad_fast.optimizers import make_student_optimizer
from ddad_fast.plots import save_image_grid
from ddad_fast.run_folder import RUN_FILES
from ddad_fast.schedules import make_scheduler
from ddad_fast.teacher import TeacherConfig, cached_teacher, train_teacher

DATA_FREE = "data-free"  # a DDADTrainer run: the student sees generated images only
KD_REAL = "kd-real"  # L1 to the teacher's logits on the real training images
SCRATCH_REAL = "scratch-real"  # cross-entropy with the real labels, no teacher


@dataclass(frozen=True)
class Method:
    """One row of the table: how the student is trained."""

    label: str  # the row's name in the table
    kind: str  # DATA_FREE, KD_REAL or SCRATCH_REAL
    overrides: dict[str, float] = field(default_factory=dict)  # DistillConfig fields (DATA_FREE)
    replay_batches: int = 0  # DATA_FREE: a replay memory of this many of the plan's batches


# With replay: every student step on samples from the memory (which the generator steps fill), and
# twice DDAD's student steps per generator step.
REPLAY_SETTINGS = {"replay_fresh": 0, "student_steps": 10}

# The paper weights of DAFL (its MNIST/CIFAR scripts): one-hot 1, activation 0.1, entropy 5.
DAFL_WEIGHTS = {"lambda_onehot": 1.0, "lambda_activation": 0.1, "lambda_entropy": 5.0}

METHODS: dict[str, Method] = {
    "ddad": Method("DDAD (adversarial L1 + BN statistics), ours", DATA_FREE, {}),
    "dfad": Method("adversarial only (DFAD, lambda_bn=0)", DATA_FREE, {"lambda_bn": 0.0}),
    "bn-only": Method(
        "BN statistics + one-hot + entropy, no adversarial term",
        DATA_FREE,
        {"lambda_adv": 0.0, "lambda_onehot": 1.0, "lambda_entropy": 5.0},
    ),
    "dafl": Method(
        "DAFL (one-hot 1 + activation 0.1 + entropy 5)",
        DATA_FREE,
        {"lambda_adv": 0.0, "lambda_bn": 0.0, **DAFL_WEIGHTS},
    ),
    # --replay: a memory of the last 64 batches (generator steps only, replay_fresh 0), 10 student
    # steps per generator step, every one replayed: chosen by the probes in RESULTS.md
    "ddad+replay": Method(
        "DDAD with replay (64-batch memory, 10 replayed student steps per generator step)",
        DATA_FREE,
        REPLAY_SETTINGS,
        replay_batches=64,
    ),
    "bn-only+replay": Method(
        "bn-only with replay (as ddad+replay)",
        DATA_FREE,
        {"lambda_adv": 0.0, "lambda_onehot": 1.0, "lambda_entropy": 5.0, **REPLAY_SETTINGS},
        replay_batches=64,
    ),
    "kd-real": Method("KD on the real training images (reference)", KD_REAL),
    "scratch": Method("student from scratch on the real labels (reference)", SCRATCH_REAL),
    # Not in the default run: bn-only plus the adversarial term, so that it and bn-only differ
    # in the student's discrepancy alone (a probe of why DDAD does not beat bn-only).
    "ddad-priors": Method(
        "DDAD + one-hot 1 + entropy 5 (bn-only plus the adversarial term)",
        DATA_FREE,
        {"lambda_onehot": 1.0, "lambda_entropy": 5.0},
    ),
}
DEFAULT_METHODS = ("ddad", "dfad", "bn-only", "dafl", "kd-real", "scratch")


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset's part of the study: image size, teacher training and the distillation budget.

    Every method gets ``epochs * epoch_iters * student_steps`` student steps of ``batch_size``
    images and is evaluated on the whole real test split after each of its ``epochs`` epochs.
    """

    dataset: str
    image_size: int | None = None  # None: the dataset's native size
    teacher_epochs: int = 60
    teacher_batch_size: int = 64
    teacher_lr: float = 0.05
    epochs: int = 10  # distillation epochs (one evaluation each)
    epoch_iters: int = 25  # generator steps per epoch
    batch_size: int = 128


# The CPU study: smallcnn teacher -> tinycnn student on both datasets (fashion-mnist at 16x16).
DIGITS = DatasetPlan("digits", teacher_epochs=60, epochs=10, epoch_iters=20, batch_size=128)
FASHION_MNIST = DatasetPlan(
    "fashion-mnist",
    image_size=16,
    teacher_epochs=3,
    teacher_batch_size=128,
    epochs=5,
    epoch_iters=30,
    batch_size=64,
)

# The smoke setting (CI): digits only, a 2-epoch teacher, 2 epochs x 2 iterations per method,
# with a small generator and 2 student steps per generator step (``tiny_distill``).
TINY_PLANS = (DatasetPlan("digits", teacher_epochs=2, epochs=2, epoch_iters=2, batch_size=32),)


def tiny_distill(distill: DistillConfig) -> DistillConfig:
    """``distill`` shrunk to the smoke setting's generator and step ratio."""
    return dataclasses.replace(distill, nz=16, ngf=8, student_steps=2)


@dataclass
class StudyConfig:
    """Every setting of the study; ``distill`` holds the DDAD settings all data-free rows share."""

    plans: tuple[DatasetPlan, ...] = (DIGITS, FASHION_MNIST)
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher: str = "smallcnn"
    student: str = "tinycnn"
    distill: DistillConfig = field(
        default_factory=lambda: DistillConfig(nz=64, ngf=32, schedule="cosine", lambda_bn=1.0)
    )
    out_dir: str = "runs/study"
    device: str = "cpu"
    progress: bool = False

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown methods {unknown}; known methods: {', '.join(METHODS)}")
        if not self.seeds or not self.plans:
            raise ConfigError("the study needs at least one seed and one dataset")


class CurvePoint(NamedTuple):
    """A run's state after one epoch: wall and CPU seconds since its start, test accuracy %."""

    seconds: float
    cpu_seconds: float
    acc: float


@dataclass
class RunResult:
    """One (dataset, method, seed) run: final and best test accuracy (%), its wall time and the
    CPU time of its process (with one torch thread: its wall time alone on a core)."""

    dataset: str
    method: str
    seed: int
    final_acc: float
    best_acc: float
    seconds: float
    cpu_seconds: float
    curve: list[CurvePoint]  # after each epoch


@dataclass
class TeacherResult:
    dataset: str
    acc: float
    seconds: float  # training time (recorded when it was trained, for a cached teacher)
    path: Path


def prepare_teacher(cfg: StudyConfig, plan: DatasetPlan) -> TeacherResult:
    """Train the plan's teacher under ``out_dir/<dataset>/teacher``, or reuse it when finished."""
    teacher_cfg = TeacherConfig(
        model=cfg.teacher,
        dataset=plan.dataset,
        image_size=plan.image_size,
        epochs=plan.teacher_epochs,
        batch_size=plan.teacher_batch_size,
        lr=plan.teacher_lr,
        schedule="cosine",
        out_dir=str(Path(cfg.out_dir) / plan.dataset / "teacher"),
        device=cfg.device,
        progress=cfg.progress,
    )
    path = cached_teacher(teacher_cfg)
    if path is None:
        train_teacher(teacher_cfg)
        path = Path(teacher_cfg.out_dir) / "teacher.pt"
    # The training time, as its metrics recorded it (also for a cached teacher).
    seconds = read_metrics(Path(teacher_cfg.out_dir) / "metrics.csv")[-1]["seconds"]
    _, test_set, info = load_dataset(plan.dataset, None, plan.image_size)
    device = resolve_device(cfg.device)
    teacher, _ = load_model(path, None, info.num_classes, info.in_channels, info.image_size)
    acc = accuracy(teacher.to(device), test_set, device)
    return TeacherResult(plan.dataset, acc, seconds, path)


def run_dir(out_dir: str | Path, plan: DatasetPlan, method: str, seed: int) -> Path:
    """The folder of one data-free run: ``out_dir/<dataset>/<method>/seed<seed>``."""
    return Path(out_dir) / plan.dataset / method / f"seed{seed}"


def check_run_dirs(folders: list[Path], overwrite: bool) -> None:
    """Before any run starts: a study tool replaces an earlier run's files only when asked. Raises
    ConfigError naming the first of ``folders`` that holds a run, unless ``overwrite``."""
    for folder in folders if not overwrite else ():
        previous = [name for name in RUN_FILES if (folder / name).exists()]
        if previous:
            raise ConfigError(
                f"{folder} already holds a run ({', '.join(previous)}): give --overwrite to "
                "replace the runs there, or another --out-dir"
            )


def distill_config(
    cfg: StudyConfig, plan: DatasetPlan, method: str, seed: int, teacher: Path
) -> DistillConfig:
    """The DistillConfig of one data-free run: shared settings, the plan's budget, the method's
    overrides."""
    return dataclasses.replace(
        cfg.distill,
        teacher_ckpt=str(teacher),
        student=cfg.student,
        dataset=plan.dataset,
        image_size=plan.image_size,
        epochs=plan.epochs,
        epoch_iters=plan.epoch_iters,
        batch_size=plan.batch_size,
        seed=seed,
        out_dir=str(run_dir(cfg.out_dir, plan, method, seed)),
        device=cfg.device,
        progress=cfg.progress,
        **{"replay": METHODS[method].replay_batches * plan.batch_size, **METHODS[method].overrides},
    )


def run_data_free(
    cfg: StudyConfig,
    plan: DatasetPlan,
    method: str,
    seed: int,
    teacher: Path,
    resume_every_epoch: bool = False,
) -> RunResult:
    """One DDADTrainer run; the first seed also writes ``samples.png`` (32 generated images).
    ``resume_every_epoch``: after each epoch a new trainer resumes from ``last.pt``, as a run
    stopped and resumed every epoch would (what ``last.pt`` leaves out, e.g. the replay memory,
    starts afresh each time). Its times are those of its last ``metrics.csv`` row (the training's
    clocks, kept across resumes), as a run read back from ``curves.csv`` has them."""
    dcfg = distill_config(cfg, plan, method, seed, teacher)
    trainer = build_trainer(dcfg)
    result = trainer.fit(stop_after=1 if resume_every_epoch else None)
    while result.epochs < dcfg.epochs:
        trainer = build_trainer(dataclasses.replace(dcfg, resume=True))
        result = trainer.fit(stop_after=1)
    if seed == cfg.seeds[0]:
        with torch.no_grad():
            samples = trainer.generator(trainer.noise())[:32]
        info = trainer.info
        save_image_grid(samples, Path(dcfg.out_dir) / "samples.png", info.mean, info.std)
    rows = read_metrics(Path(dcfg.out_dir) / "metrics.csv")
    curve = [CurvePoint(r["seconds"], r["cpu_seconds"], r["student_acc"]) for r in rows]
    last = curve[-1]
    return RunResult(
        plan.dataset, method, seed, result.final_acc, result.best_acc, last.seconds,
        last.cpu_seconds, curve,
    )  # fmt: skip


def run_real_data(
    cfg: StudyConfig, plan: DatasetPlan, method: str, seed: int, teacher: Path
) -> RunResult:
    """The student trained on the real training images, with DDAD's student budget and optimiser.

    KD_REAL minimises L1(teacher, student) logits, the data-free student's loss; SCRATCH_REAL the
    cross-entropy with the labels. Both use the teacher's augmentation (random shifts, flips where
    valid), ``epochs * epoch_iters * student_steps`` steps of ``batch_size`` images, DDAD's
    optimiser, learning rate, momentum, weight decay and schedule (and, for KD_REAL, its
    ``center_logits``), and are evaluated after each epoch.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    dcfg = cfg.distill
    device = resolve_device(cfg.device)
    train_set, test_set, info = load_dataset(plan.dataset, None, plan.image_size)
    teacher_model = None
    if METHODS[method].kind == KD_REAL:
        teacher_model, _ = load_model(
            teacher, None, info.num_classes, info.in_channels, info.image_size
        )
        teacher_model = teacher_model.to(device).eval().requires_grad_(False)
    torch.manual_seed(seed)
    student = build_model(cfg.student, info.num_classes, info.in_channels, info.image_size)
    student = student.to(device).train()
    opt = make_student_optimizer(dcfg, student.parameters(), None)
    sched = make_scheduler(
        opt, dcfg.schedule, plan.epochs, dcfg.step_every, dcfg.milestones, dcfg.step_gamma
    )
    shuffle = torch.Generator().manual_seed(seed)
    batches = itertools.chain.from_iterable(
        iterate_batches(train_set, plan.batch_size, device, True, shuffle)
        for _ in itertools.count()
    )
    curve, acc, best = [], float("nan"), -1.0
    for _ in range(plan.epochs):
        for _ in range(plan.epoch_iters * dcfg.student_steps):
            x, y = next(batches)
            x = train_augment(x, info, None)
            logits = student(x)
            if teacher_model is None:
                loss = F.cross_entropy(logits, y)
            else:
                with torch.no_grad():
                    t_logits = teacher_model(x)
                loss = logit_discrepancy(t_logits, logits, dcfg.center_logits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        acc = accuracy(student, test_set, device)
        best = max(best, acc)
        curve.append(CurvePoint(time.perf_counter() - start, time.process_time() - cpu_start, acc))
    seconds, cpu_seconds = curve[-1].seconds, curve[-1].cpu_seconds
    return RunResult(plan.dataset, method, seed, acc, best, seconds, cpu_seconds, curve)


def run_dataset(cfg: StudyConfig, plan: DatasetPlan) -> tuple[TeacherResult, list[RunResult]]:
    """The teacher, then every (seed, method) run of one dataset, seeds outermost (so a change in
    the machine's load falls on every method alike); ``out_dir/<dataset>/runs.csv`` grows as runs
    finish."""
    teacher = prepare_teacher(cfg, plan)
    print(f"study: {plan.dataset} teacher {teacher.acc:.2f}% ({teacher.seconds:.0f}s)", flush=True)
    runs = []
    for seed, method in itertools.product(cfg.seeds, cfg.methods):
        run = run_data_free if METHODS[method].kind == DATA_FREE else run_real_data
        result = run(cfg, plan, method, seed, teacher.path)
        runs.append(result)
        write_runs_csv(runs, Path(cfg.out_dir) / plan.dataset / "runs.csv")
        print(
            f"study: {plan.dataset} {method} seed {seed}: final {result.final_acc:.2f}% "
            f"(best {result.best_acc:.2f}%), {result.seconds:.0f}s",
            flush=True,
        )
    return teacher, runs


def run_study(
    cfg: StudyConfig, jobs: int = 1, overwrite: bool = False
) -> tuple[list[TeacherResult], list[RunResult]]:
    """Every dataset's runs (``run_dataset``), ``jobs`` datasets at a time in worker processes
    with this process's torch thread count; writes every run to ``out_dir/runs.csv``. Raises
    ConfigError, before any run, where a data-free run's folder holds a run and not
    ``overwrite``."""
    cfg.validate()
    check_run_dirs(
        [
            run_dir(cfg.out_dir, plan, method, seed)
            for plan in cfg.plans
            for method in cfg.methods
            if METHODS[method].kind == DATA_FREE
            for seed in cfg.seeds
        ],
        overwrite,
    )
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    if jobs > 1:
        with ProcessPoolExecutor(
            min(jobs, len(cfg.plans)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=torch.set_num_threads,
            initargs=(torch.get_num_threads(),),
        ) as pool:
            done = list(pool.map(run_dataset, [cfg] * len(cfg.plans), cfg.plans))
    else:
        done = [run_dataset(cfg, plan) for plan in cfg.plans]
    teachers = [teacher for teacher, _ in done]
    runs = [r for _, dataset_runs in done for r in dataset_runs]
    write_runs_csv(runs, Path(cfg.out_dir) / "runs.csv")
    return teachers, runs


def write_runs_csv(runs: list[RunResult], path: Path) -> None:
    """One row per run: dataset, method, seed, final and best accuracy, wall and CPU seconds."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        head = ["dataset", "method", "seed", "final_acc", "best_acc", "seconds", "cpu_seconds"]
        writer.writerow(head)
        for r in runs:
            row = [r.dataset, r.method, r.seed, f"{r.final_acc:.2f}", f"{r.best_acc:.2f}"]
            writer.writerow([*row, f"{r.seconds:.1f}", f"{r.cpu_seconds:.1f}"])
