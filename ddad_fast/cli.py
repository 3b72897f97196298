"""The ``ddad`` command: teacher, distill, eval, demo.

Flags are generated from the config dataclasses (``--lr-student`` for ``lr_student``), with the
help text taken from each field's trailing comment, so the dataclass stays the one source of truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__
from .backends import backend_names
from .batching import accuracy
from .builder import build_trainer
from .cpu_capability import check_cpu_capability
from .data import dataset_names, load_dataset
from .demo import run_demo
from .demo_seg import run_seg_demo
from .distill_config import DistillConfig
from .distributed import resolve_device, shutdown
from .errors import DDADError
from .model_io import load_model
from .models import model_names, seg_model_names
from .optimizers import OPTIMIZERS
from .recipes import RECIPES, recipe_settings
from .run_folder import check_out_dir
from .run_plots import plot_run_folder, write_run_plots
from .schedules import SCHEDULES
from .seg_metrics import evaluate_segmentation
from .setting_checks import check_device, check_image_size
from .signals import INTERRUPTED_STATUS, Stopped, stop_line, stop_status
from .tasks import TASK_NAMES, check_task
from .teacher import TeacherConfig, train_teacher


def _field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` from lines ``name: type = default  # comment`` of the class source."""
    pattern = re.compile(r"^\s+(\w+): [^=]+=.*?#\s*(.+)$")
    return {m[1]: m[2] for m in map(pattern.match, inspect.getsource(cls).splitlines()) if m}


OVERWRITE_HELP = (
    "replace the run out_dir holds (its files stay as they are until this run's first checkpoint)"
)

# The public DFAD script's flag names, accepted by `ddad distill` as aliases.
DFAD_ALIASES = {
    "batch_size": ["--batch_size"],
    "lr_student": ["--lr_S"],
    "lr_generator": ["--lr_G"],
    "epoch_iters": ["--epoch_itrs"],
}
# ``--dataset`` names the data a distillation is evaluated on, never trained on.
DISTILL_ALIASES = {**DFAD_ALIASES, "dataset": ["--eval-dataset"]}


def allowed_values() -> dict[str, list[str]]:
    """The values a setting takes, for the settings that take one of a list (its --help)."""
    return {
        "backend": backend_names(),
        "task": list(TASK_NAMES),
        "schedule": list(SCHEDULES),
        "student_optimizer": list(OPTIMIZERS),
        "optimizer": list(OPTIMIZERS),
        "dataset": dataset_names(),
        "model": model_names() + seg_model_names(),
        "teacher": model_names() + seg_model_names(),
        "student": model_names() + seg_model_names(),
    }


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, aliases: dict[str, list[str]] | None = None
) -> None:
    """One flag per dataclass field of ``cls``, typed from the field, plus ``aliases`` (extra flag
    names per field). A flag not given stays out of the parsed namespace (``given_settings``); a
    tuple field takes one or more values."""
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    allowed = allowed_values()
    for field in dataclasses.fields(cls):
        flags = ["--" + field.name.replace("_", "-"), *(aliases or {}).get(field.name, [])]
        kind = hints[field.name]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        one_of = f"; one of: {', '.join(allowed[field.name])}" if field.name in allowed else ""
        help_text = f"{comments.get(field.name, '')} (default: {field.default}{one_of})"
        flag = {"default": argparse.SUPPRESS, "help": help_text.replace("%", "%%")}
        if base is bool:
            flag["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is tuple:
            flag.update(type=typing.get_args(base)[0], nargs="+", metavar="N")
        else:
            flag["type"] = base
        parser.add_argument(*flags, **flag)


def given_settings(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """``{field: value}`` for the fields of ``cls`` whose flags the command line gave."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name in args}


def config_from_args(cls: type, args: argparse.Namespace):
    """``cls`` with the settings the command line gave, the others at their defaults."""
    return cls(**given_settings(cls, args))


def resolve_distill_settings(
    args: argparse.Namespace,
) -> tuple[DistillConfig, dict[str, str]]:
    """The run's settings: ``--recipe``'s, overridden by every flag the command line gave; and,
    per setting, where its value came from (the command line, the recipe, or the default)."""
    given = given_settings(DistillConfig, args)
    recipe = recipe_settings(args.recipe) if args.recipe else {}
    origin = {
        **dict.fromkeys(recipe, f"recipe {args.recipe}"),
        **dict.fromkeys(given, "command line"),
    }
    sources = {f.name: origin.get(f.name, "default") for f in dataclasses.fields(DistillConfig)}
    return DistillConfig(**{**recipe, **given}), sources


def config_lines(cfg: Any, sources: dict[str, str]) -> list[str]:
    """``name = value  # source`` for every setting of ``cfg``, in the dataclass's order."""
    settings = [(f"{f.name} = {getattr(cfg, f.name)}", f.name) for f in dataclasses.fields(cfg)]
    width = max(len(text) for text, _ in settings)
    return [f"{text:<{width}}  # {sources[name]}" for text, name in settings]


TEACHER_EXAMPLES = """examples:
  ddad teacher --model smallcnn --dataset digits --epochs 60 --out-dir runs/teacher
  ddad teacher --model resnet34 --dataset cifar10 --data-root ~/data/cifar10 --epochs 200"""
DISTILL_EXAMPLES = """examples:
  ddad distill --teacher-ckpt runs/teacher/teacher.pt --student tinycnn   # no data needed
  ddad distill --teacher-ckpt t.pt --student resnet18 --dataset cifar10 --backend fast
  ddad distill --teacher-ckpt t.pt --student resnet18 --resume            # continue last.pt
  ddad distill --recipe dfad-cifar10 --teacher-ckpt t.pt --backend fast   # DFAD's command
  ddad distill --recipe dfad-nyuv2 --print-config                          # its settings
  torchrun --nproc_per_node=8 -m ddad_fast distill --teacher-ckpt t.pt --backend fast ..."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like the command's other errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"ddad: error: {message} (see {self.prog} --help)\n")


def _cmd_teacher(args: argparse.Namespace) -> None:
    cfg = config_from_args(TeacherConfig, args)
    cfg.validate()
    check_out_dir(cfg.out_dir, cfg.resume, args.overwrite)
    acc = train_teacher(cfg)
    score = "mIoU" if cfg.task == "seg" else "accuracy"
    print(f"teacher {cfg.model} on {cfg.dataset}: test {score} {acc:.2f}% -> {cfg.out_dir}")


def _cmd_distill(args: argparse.Namespace) -> int:
    cfg, sources = resolve_distill_settings(args)
    cfg.validate()
    if args.print_config:
        print("\n".join(config_lines(cfg, sources)))
        return 0
    check_out_dir(cfg.out_dir, cfg.resume, args.overwrite)
    trainer = build_trainer(cfg)
    if trainer.ops.compile and trainer.dist.is_main:
        print(f"distill: compiling the {cfg.backend} backend's steps before the first", flush=True)
    result = trainer.fit()
    shutdown(trainer.dist)  # a clean exit of every torchrun rank (barrier, then destroy)
    if result.stopped:
        where = (
            f"at epoch {result.epochs + 1}, iteration {result.iteration}"
            if result.iteration
            else f"after epoch {result.epochs}"
        )
        if trainer.dist.is_main:
            print(stop_line("distill", result.stopped, where, Path(cfg.out_dir) / "last.pt"))
        return stop_status(result.stopped)
    if not trainer.dist.is_main:
        return 0
    info = trainer.info
    write_run_plots(cfg.out_dir, trainer.generator, trainer.noise(), info.mean, info.std)
    if cfg.dataset is None:
        print(
            f"distill: student after {result.epochs} epochs, {result.seconds:.0f}s, not evaluated "
            f"(no --dataset) -> {Path(cfg.out_dir) / 'student.pt'}"
        )
        return 0
    score = "mIoU " if cfg.task == "seg" else ""
    print(
        f"distill: teacher {score}{result.teacher_acc:.2f}% student {score}{result.final_acc:.2f}% "
        f"(best {result.best_acc:.2f}%) after {result.epochs} epochs, {result.seconds:.0f}s "
        f"-> {cfg.out_dir}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> None:
    check_task(args.task, {"model": args.model} if args.model else None, args.dataset)
    check_image_size(args.image_size)
    check_device(args.device)
    _, test_set, info = load_dataset(args.dataset, args.data_root, args.image_size)
    facts = info.num_classes, info.in_channels, info.image_size
    model, record = load_model(args.ckpt, args.model, *facts, args.task, name_flag="--model")
    device = resolve_device(args.device)
    where = f"eval: {record['model']} from {args.ckpt} on {info.name} test:"
    if args.task == "cls":
        print(f"{where} {accuracy(model.to(device), test_set, device):.2f}%")
        return
    scores = evaluate_segmentation(
        model.to(device), test_set, device, info.num_classes, info.ignore_index
    )
    print(f"{where} mIoU {100 * scores.miou:.2f}% pixel accuracy {100 * scores.pixel_acc:.2f}%")
    per_class = " ".join(f"{k}:{100 * iou:.1f}" for k, iou in enumerate(scores.per_class_iou))
    print(f"eval: per-class IoU (%, nan: class absent) {per_class}")


def _cmd_plot(args: argparse.Namespace) -> None:
    paths = plot_run_folder(args.run_dir)
    print(f"plot: {', '.join(map(str, paths))}")


def _cmd_demo(args: argparse.Namespace) -> None:
    if args.task == "seg":
        run_seg_demo(args.out_dir or "runs/demo-seg", args.device, progress=args.progress)
    else:
        run_demo(args.out_dir or "runs/demo", args.device, progress=args.progress)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="ddad",
        description="Data-free distillation by Dual Discriminator Adversarial Distillation.",
    )
    parser.add_argument("--version", action="version", version=f"ddad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "teacher",
        help="train a teacher on a real dataset",
        epilog=TEACHER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(p, TeacherConfig)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(run=_cmd_teacher)

    p = sub.add_parser(
        "distill",
        help="distill a student from a teacher, without data",
        epilog=DISTILL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flags(p, DistillConfig, DISTILL_ALIASES)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument(
        "--recipe",
        metavar="NAME",
        help="start from a published command's settings; flags given here override them "
        f"(one of: {', '.join(RECIPES)}; ddad_fast/recipes.py names each value's source)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings and where each came from, then exit (nothing loads)",
    )
    p.set_defaults(run=_cmd_distill)

    p = sub.add_parser("eval", help="test accuracy (or mIoU) of a saved model")
    p.add_argument("--task", choices=TASK_NAMES, default="cls", help="cls or seg (mIoU)")
    p.add_argument("--ckpt", required=True, help="teacher/best/student/last.pt or a state_dict")
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(dataset_names())}")
    p.add_argument("--model", default=None, help="registry name (needed for a bare state_dict)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("plot", help="redraw samples.png and curves.png of a distillation run")
    p.add_argument("run_dir", help="a ddad distill out-dir (its last.pt and metrics.csv)")
    p.set_defaults(run=_cmd_plot)

    p = sub.add_parser("demo", help="the embedded default: digits teacher, data-free student")
    p.add_argument(
        "--task",
        choices=TASK_NAMES,
        default="cls",
        help="cls: digits classification; seg: segmentation of composite digit canvases",
    )
    p.add_argument("--out-dir", default=None, help="default: runs/demo (cls), runs/demo-seg (seg)")
    p.add_argument("--device", default="auto")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; a user error prints one line ``ddad: error: ...`` and returns 2.

    A run stopped by a signal prints how to continue and returns ``signals.stop_status`` (130
    after Ctrl-C, 0 after SIGTERM); a second Ctrl-C, or one outside a run's loop, prints one line
    and returns 130.
    """
    args = build_parser().parse_args(argv)
    try:
        check_cpu_capability()
        return args.run(args) or 0
    except Stopped as e:
        print(e)
        return stop_status(e.signal_name)
    except KeyboardInterrupt:
        print("ddad: interrupted; the last checkpoint written stays whole", file=sys.stderr)
        return INTERRUPTED_STATUS
    except DDADError as e:
        print(f"ddad: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # torch.OutOfMemoryError (CUDA) is one too
        if not isinstance(e, torch.OutOfMemoryError) and "can't allocate memory" not in str(e):
            raise
        print(
            f"ddad: error: out of memory ({str(e).splitlines()[0][:160]}): the settings need "
            "more than the device has; give a smaller --batch-size, --ngf, --nz or --image-size "
            "(a checkpoint already written stays whole)",
            file=sys.stderr,
        )
        return 2
