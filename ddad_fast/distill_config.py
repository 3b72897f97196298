"""The settings of a distillation run (``DistillConfig``), their checks, and which of them may
change when a run resumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .backends import get_backend
from .errors import ConfigError
from .optimizers import check_optimizer
from .schedules import STEP_GAMMA, check_schedule
from .setting_checks import (
    check_at_least,
    check_device,
    check_finite,
    check_image_size,
    check_momentum,
    check_non_negative,
)
from .tasks import get_task

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
    """Every setting of a DDAD run. Defaults: DFAD's published CIFAR-10 hyperparameters (the
    recipe ``dfad-cifar10`` spells them out) with DDAD's BN-statistics term on (``lambda_bn`` 1)
    and seed 0."""

    teacher_ckpt: str | None = None  # teacher weights (our teacher.pt or a published state_dict)
    teacher: str | None = None  # registry name (default: the one recorded in teacher_ckpt)
    task: str = "cls"  # cls (classification) or seg (segmentation: mIoU, log(1 + L1), GeneratorB)
    student: str = "resnet18"  # registry name of the student
    dataset: str | None = None  # evaluation data, scored each epoch, never trained on (None: none)
    data_root: str | None = None  # dataset folder (default: the dataset's usual place)
    num_classes: int | None = None  # teacher's class count (None: its record's or the dataset's)
    in_channels: int | None = None  # image channels (None: the teacher's record or the dataset's)
    image_size: int | None = None  # input size (None: the teacher's record or the dataset's)
    out_dir: str = "runs/distill"  # metrics.csv, last.pt, best.pt (student.pt without data) go here
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
    milestones: tuple[int, ...] | None = None  # step: decay after these epochs (None: 20%, 40%)
    step_every: int = 0  # step schedule: decay every N epochs instead (DFAD's seg scripts: 100)
    step_gamma: float = STEP_GAMMA  # step schedule: the factor of each decay (DFAD's NYUv2: 0.3)
    lambda_bn: float = 1.0  # weight of the teacher's BN-statistics term (0: plain DFAD)
    lambda_onehot: float = 0.0  # DAFL one-hot term (off by default)
    lambda_entropy: float = 0.0  # DAFL information-entropy term (off by default)
    lambda_adv: float = 1.0  # generator's adversarial-term weight (0: it ignores the student)
    lambda_activation: float = 0.0  # DAFL activation term (off by default)
    center_logits: bool = False  # L1 between logits less each pixel's mean over classes
    teacher_fp32: bool = False  # AMP: the teacher outside autocast, so t - s keeps its sign longer
    seg_generator_bn: bool = False  # seg: affine-free BN after GeneratorB's tanh (DFAD has none)
    sync_bn: bool = False  # torchrun on GPUs: SyncBatchNorm in student and generator (DFAD: off)
    replay: int = 0  # samples in the replay memory (0: off, every student step on fresh images)
    replay_fresh: int = 0  # with replay: the first N student steps of an iteration on fresh images
    check_every: int = 10  # iterations between finiteness checks (one host sync each)
    nan_retries: int = 3  # rollbacks in a row to the last check before a non-finite loss ends it
    resume: bool = False  # continue from out_dir/last.pt
    progress: bool = True  # tqdm bars

    def __post_init__(self) -> None:
        if self.milestones is not None:  # a list (argparse's, a user's) compares unequal to a tuple
            self.milestones = tuple(self.milestones)

    def validate(self) -> None:
        """Raise ConfigError on settings that cannot work, before any data or model loads."""
        check_finite(self)
        names = "epochs", "epoch_iters", "student_steps", "batch_size", "nz", "ngf", "check_every"
        check_at_least(self, 1, *names)
        check_non_negative(
            self,
            "lr_student",
            "lr_generator",
            "weight_decay",
            "lambda_bn",
            "lambda_onehot",
            "lambda_entropy",
            "lambda_adv",
            "lambda_activation",
            "nan_retries",
        )
        if self.num_classes is not None:
            check_at_least(self, 2, "num_classes")
        if self.in_channels is not None:
            check_at_least(self, 1, "in_channels")
        check_momentum(self.momentum)
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2: BN statistics need a batch")
        check_optimizer("student_optimizer", self.student_optimizer)
        check_schedule(
            self.schedule, self.step_every, self.milestones, self.step_gamma, self.epochs
        )
        get_backend(self.backend)
        check_image_size(self.image_size, get_task(self.task).size_multiple)
        check_device(self.device)
        check_non_negative(self, "replay", "replay_fresh")
        if self.replay and self.replay_fresh >= self.student_steps:
            raise ConfigError(
                f"replay_fresh {self.replay_fresh} leaves none of the {self.student_steps} student "
                "steps to replay: give fewer fresh steps, or no --replay"
            )
        if self.seg_generator_bn and self.task != "seg":
            raise ConfigError(
                "seg_generator_bn applies to --task seg only (the classification generator, "
                "DFAD's GeneratorA, always ends with its affine-free BN)"
            )
