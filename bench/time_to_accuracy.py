"""Time to accuracy: the study's methods, each at a step budget of its own, read at equal time.

    python bench/time_to_accuracy.py --dataset fashion-mnist --jobs 2 \\
        --runs ddad:10 ddad+replay:4 bn-only+replay:4 kd-real:4        # runs/tta/fashion-mnist/
    python bench/time_to_accuracy.py ... --results bench/RESULTS.md --figures bench/figures
    python bench/time_to_accuracy.py --dataset digits --tiny --seeds 0 --runs ddad:1 ddad+replay:1
                                                                        # runs/tta-tiny/digits/

``--runs METHOD:SCALE``: a study method (bench/study.py) with ``SCALE`` times the plan's epochs
(the same iterations per epoch, so one test evaluation per epoch gives the curve its points).
Every run is one process with one torch thread; its time is the CPU time of that process
(``time.process_time``): what the run takes alone on an idle core, so that runs sharing the
machine's cores with each other or with other work are timed as if they had not. The first run
given is the baseline: ``--target`` defaults to its final accuracy (mean over seeds).

Writes each run's folder under ``--out-dir``/x<scale>/, and under ``--out-dir``/<dataset>/
``curves.csv`` (one row per run and
epoch; a finished run found there is not run again), ``time_to_accuracy.md`` and
``time_to_accuracy_<dataset>.png``. ``--results`` puts the section into that Markdown file.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import multiprocessing
import os
import platform
import shlex
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.study

from bench.study import (
    DATA_FREE,
    METHODS,
    TINY_PLANS,
    CurvePoint,
    DatasetPlan,
    RunResult,
    StudyConfig,
    check_run_dirs,
    prepare_teacher,
    run_data_free,
    run_dir,
    run_real_data,
    tiny_distill,
)
from bench.study_report import checkout_commit, replace_section
from bench.time_report import RunSpec, plot_time_to_accuracy, time_section
from ddad_fast.errors import ConfigError

CURVE_FIELDS = ["method", "scale", "seed", "epoch", "seconds", "cpu_seconds", "acc"]


def parse_run(text: str) -> RunSpec:
    """``METHOD:SCALE`` -> RunSpec (argparse reports the error when it is not one)."""
    method, sep, scale = text.partition(":")
    if method not in METHODS or not sep or not scale.isdigit() or int(scale) < 1:
        known = ", ".join(METHODS)
        raise argparse.ArgumentTypeError(
            f"wants METHOD:SCALE (SCALE >= 1; methods: {known}), got {text!r}"
        )
    return RunSpec(method, int(scale))


def read_curves(path: Path, dataset: str) -> dict[tuple[RunSpec, int], RunResult]:
    """The finished runs recorded in ``curves.csv``, by (spec, seed)."""
    if not path.exists():
        return {}
    points: dict[tuple[RunSpec, int], list[CurvePoint]] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            key = (RunSpec(r["method"], int(r["scale"])), int(r["seed"]))
            point = CurvePoint(float(r["seconds"]), float(r["cpu_seconds"]), float(r["acc"]))
            points.setdefault(key, []).append(point)
    return {
        (spec, seed): RunResult(
            dataset,
            spec.method,
            seed,
            curve[-1].acc,
            max(p.acc for p in curve),
            curve[-1].seconds,
            curve[-1].cpu_seconds,
            curve,
        )
        for (spec, seed), curve in points.items()
    }


def append_curve(path: Path, spec: RunSpec, result: RunResult) -> None:
    """Add one finished run's epochs to ``curves.csv`` (header first when the file is new)."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(CURVE_FIELDS)
        for epoch, p in enumerate(result.curve, 1):
            row = [spec.method, spec.scale, result.seed, epoch]
            writer.writerow([*row, f"{p.seconds:.2f}", f"{p.cpu_seconds:.2f}", f"{p.acc:.3f}"])


def scale_dir(out_dir: str | Path, scale: int) -> Path:
    """Where the runs at ``scale`` go: ``x<scale>`` beside ``out_dir`` (``<out-dir>/<dataset>``)."""
    return Path(out_dir).parent / f"x{scale}"


def run_one(
    cfg: StudyConfig, plan: DatasetPlan, spec: RunSpec, seed: int, teacher: Path
) -> RunResult:
    """One run of ``spec`` (in a worker process of one torch thread), in
    ``<out-dir>/x<scale>/<dataset>/<method>/seed<seed>``."""
    torch.set_num_threads(1)
    plan = dataclasses.replace(plan, epochs=plan.epochs * spec.scale)
    cfg = dataclasses.replace(cfg, out_dir=str(scale_dir(cfg.out_dir, spec.scale)))
    run = run_data_free if METHODS[spec.method].kind == DATA_FREE else run_real_data
    return run(cfg, plan, spec.method, seed, teacher)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [p.dataset for p in StudyConfig().plans]
    parser.add_argument("--dataset", choices=names, default="fashion-mnist")
    parser.add_argument(
        "--runs",
        nargs="+",
        type=parse_run,
        default=[parse_run(t) for t in ("ddad:10", "ddad+replay:4", "kd-real:4")],
        metavar="METHOD:SCALE",
        help="the first is the baseline (default: ddad:10 ddad+replay:4 kd-real:4)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--target", type=float, help="accuracy %% to reach (default: baseline's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (processes)")
    parser.add_argument("--study-dir", default="runs/study", help="where the teacher is cached")
    parser.add_argument(
        "--out-dir",
        help="default runs/tta, and runs/tta-tiny with --tiny (whose runs must never "
        "stand in for the full setting's in curves.csv)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace unrecorded runs in --out-dir"
    )
    parser.add_argument("--tiny", action="store_true", help="the seconds-long smoke setting")
    parser.add_argument("--results", type=Path, help="also write the section into this file")
    parser.add_argument("--figures", type=Path, help="copy the PNG here (linked from --results)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be at least 1, got {args.jobs}")
    torch.set_num_threads(1)
    plans = TINY_PLANS if args.tiny else StudyConfig().plans
    plan = next((p for p in plans if p.dataset == args.dataset), None)
    if plan is None:
        raise SystemExit(f"no {'tiny ' if args.tiny else ''}study plan for {args.dataset}")
    out = Path(args.out_dir or ("runs/tta-tiny" if args.tiny else "runs/tta")) / plan.dataset
    cfg = StudyConfig(plans=(plan,), seeds=tuple(args.seeds), out_dir=str(out))
    if args.tiny:
        cfg.distill = tiny_distill(cfg.distill)
    teacher = prepare_teacher(dataclasses.replace(cfg, out_dir=args.study_dir), plan)
    out.mkdir(parents=True, exist_ok=True)
    curves = out / "curves.csv"
    done = read_curves(curves, plan.dataset)
    todo = [(s, seed) for seed in args.seeds for s in args.runs if (s, seed) not in done]
    print(f"time-to-accuracy: {len(done)} runs recorded, {len(todo)} to run", flush=True)
    folders = [
        run_dir(scale_dir(out, spec.scale), plan, spec.method, seed)
        for spec, seed in todo
        if METHODS[spec.method].kind == DATA_FREE
    ]
    try:  # a run killed before it was recorded left its folder: replaced only when asked
        check_run_dirs(folders, args.overwrite)
    except ConfigError as err:
        raise SystemExit(f"time_to_accuracy: {err}") from None
    command = "python bench/time_to_accuracy.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    commit = checkout_commit()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(run_one, cfg, plan, spec, seed, teacher.path): (spec, seed)
            for spec, seed in todo
        }
        for future, (spec, seed) in futures.items():  # in submission order: seeds outermost
            result = future.result()
            append_curve(curves, spec, result)
            done[spec, seed] = result
            print(
                f"time-to-accuracy: {spec.label} seed {seed}: {result.final_acc:.2f}% in "
                f"{result.cpu_seconds:.0f} CPU s ({result.seconds:.0f} s wall)",
                flush=True,
            )
    runs = {key: done[key] for key in ((s, seed) for seed in args.seeds for s in args.runs)}
    png = out / f"time_to_accuracy_{plan.dataset}.png"
    target = plot_time_to_accuracy(runs, args.runs, plan.dataset, args.target, png)
    cpu_minutes = sum(r.cpu_seconds for r in runs.values()) / 60
    wall_minutes = sum(r.seconds for r in runs.values()) / 60
    facts = (
        f"Written at commit `{commit}`; {platform.machine()} CPU with {os.cpu_count()} cores, "
        f"torch {torch.__version__}, one torch thread per run. {len(runs)} runs, "
        f"{cpu_minutes:.0f} CPU min in all ({wall_minutes:.0f} min of their wall clocks added up; "
        f"the machine shared). Teacher ({cfg.teacher}) {teacher.acc:.2f}%."
    )
    figures = out if args.figures is None else args.figures
    if args.results is not None:
        figures.mkdir(parents=True, exist_ok=True)
        if figures.resolve() != out.resolve():
            shutil.copyfile(png, figures / png.name)
        link = os.path.relpath(figures / png.name, args.results.parent)
        section = time_section(cfg, runs, args.runs, target, command, facts, link)
        replace_section(args.results, section)
    text = time_section(cfg, runs, args.runs, target, command, facts, png.name)
    (out / "time_to_accuracy.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
