"""One data-free setting of the accuracy study, over seeds: how the probes in RESULTS.md were run.

    python bench/study_probe.py --set lambda_bn=0.1                    # DDAD with a weaker BN term
    python bench/study_probe.py --method bn-only --set center_logits=true --seeds 0 1 2 3 4
    python bench/study_probe.py --student smallcnn --budget-scale 3

Runs the study's data-free ``--method`` (its DistillConfig overrides, then each ``--set``) on the
study's plan for ``--dataset``, its cached teacher (``--study-dir``, trained there if missing) and
its student budget; prints each seed's final test accuracy and the mean +- sample std, and writes
them to ``--out-dir``/probe.csv.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
import sys
import typing
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.study

from bench.study import (
    DATA_FREE,
    METHODS,
    TINY_PLANS,
    StudyConfig,
    check_run_dirs,
    prepare_teacher,
    run_data_free,
    run_dir,
    tiny_distill,
)
from ddad_fast.distill_config import DistillConfig
from ddad_fast.errors import ConfigError


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` for a DistillConfig field of type bool, int, float or str -> (name, value of
    the field's type); the optional fields (the teacher, the data folder) are the study's own."""
    name, sep, value = text.partition("=")
    kinds = typing.get_type_hints(DistillConfig)  # the types the CLI's flags take too
    if not sep or name not in kinds:
        raise ConfigError(f"--set wants name=value with a DistillConfig field, got {text!r}")
    kind = kinds[name]
    if kind is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"--set {name} wants true or false, got {value!r}")
        return name, value.lower() in ("true", "1")
    if kind not in (int, float, str):
        raise ConfigError(f"--set cannot set {name} (of type {kind})")
    try:
        return name, kind(value)
    except ValueError:
        raise ConfigError(f"--set {name} wants a {kind.__name__}, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = StudyConfig()
    data_free = [name for name, m in METHODS.items() if m.kind == DATA_FREE]
    parser.add_argument("--dataset", default="fashion-mnist", help="a study plan's dataset")
    parser.add_argument("--method", choices=data_free, default="ddad")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget-scale", type=int, default=1)
    parser.add_argument("--student", default=defaults.student)
    parser.add_argument("--study-dir", default="runs/study", help="where the teacher is cached")
    parser.add_argument("--out-dir", default="runs/probe")
    parser.add_argument("--overwrite", action="store_true", help="replace runs in --out-dir")
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument(
        "--resume-every-epoch",
        action="store_true",
        help="a new trainer resumes from last.pt after every epoch (what a resume costs a run)",
    )
    parser.add_argument("--tiny", action="store_true", help="the seconds-long smoke setting")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    plans = TINY_PLANS if args.tiny else StudyConfig().plans
    plan = next((p for p in plans if p.dataset == args.dataset), None)
    if plan is None:
        raise SystemExit(f"no study plan for --dataset {args.dataset}")
    if args.budget_scale < 1:
        raise SystemExit(f"--budget-scale must be at least 1, got {args.budget_scale}")
    plan = dataclasses.replace(plan, epoch_iters=plan.epoch_iters * args.budget_scale)
    try:
        settings = dict(parse_setting(text) for text in args.set)
        folders = [run_dir(args.out_dir, plan, "probe", seed) for seed in args.seeds]
        check_run_dirs(folders, args.overwrite)
    except ConfigError as err:
        raise SystemExit(f"study_probe: {err}") from None
    base = METHODS[args.method]
    probe = dataclasses.replace(
        base, label=f"{base.label}, with {settings}", overrides={**base.overrides, **settings}
    )
    cfg = StudyConfig(
        plans=(plan,), seeds=tuple(args.seeds), student=args.student, device=args.device
    )
    if args.tiny:
        cfg.distill = tiny_distill(cfg.distill)
    teacher = prepare_teacher(dataclasses.replace(cfg, out_dir=args.study_dir), plan).path
    cfg.out_dir = args.out_dir
    METHODS["probe"] = probe  # run_data_free looks the method up by name
    accs = []
    for seed in args.seeds:
        result = run_data_free(cfg, plan, "probe", seed, teacher, args.resume_every_epoch)
        accs.append(result.final_acc)
        print(f"probe seed {seed}: {result.final_acc:.2f}% ({result.seconds:.0f}s)", flush=True)
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"probe {args.method} {settings}: {statistics.mean(accs):.2f} +- {spread:.2f}")
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    with (Path(args.out_dir) / "probe.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "settings", "seed", "final_acc"])
        for seed, acc in zip(args.seeds, accs, strict=True):
            writer.writerow([args.method, settings, seed, f"{acc:.2f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
