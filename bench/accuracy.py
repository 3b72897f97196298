"""The accuracy study: DDAD against adversarial-only (DFAD), BN-statistics-only and DAFL
generators, and against KD / scratch training on the real images, on the same teacher and budget.

    python bench/accuracy.py --jobs 2          # the CPU study (datasets side by side), runs/study/
    python bench/accuracy.py --jobs 2 --results bench/RESULTS.md --figures bench/figures
    python bench/accuracy.py --tiny --seeds 0  # seconds: the CI smoke setting

Writes under --out-dir: runs.csv (every run), study.md (the section), accuracy_vs_time.png,
samples_<dataset>_<method>.png, and each run's folder <dataset>/<method>/seed<k>/. --results puts
the section into that Markdown file; --figures gets the PNGs and runs.csv (accuracy_runs.csv).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.study

from bench.study import (
    DATA_FREE,
    DEFAULT_METHODS,
    METHODS,
    TINY_PLANS,
    StudyConfig,
    run_study,
    tiny_distill,
)
from bench.study_report import (
    checkout_commit,
    plot_accuracy_vs_time,
    replace_section,
    section,
)
from ddad_fast.distributed import resolve_device
from ddad_fast.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [p.dataset for p in StudyConfig().plans]
    parser.add_argument("--datasets", nargs="+", choices=names, default=names)
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(DEFAULT_METHODS)
    )
    parser.add_argument(
        "--budget-scale",
        type=int,
        default=1,
        help="multiply every dataset's iterations per epoch (the step budget) by this",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    defaults = StudyConfig()
    parser.add_argument("--teacher", default=defaults.teacher, help="teacher registry name")
    parser.add_argument("--student", default=defaults.student, help="student registry name")
    parser.add_argument(
        "--image-size", type=int, help="resize every dataset to this side (default: the plan's)"
    )
    parser.add_argument("--device", default=defaults.device, help="cpu, cuda or auto")
    parser.add_argument("--out-dir", default="runs/study")
    parser.add_argument("--overwrite", action="store_true", help="replace runs in --out-dir")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--jobs", type=int, default=1, help="datasets run at once (processes)")
    parser.add_argument("--tiny", action="store_true", help="the seconds-long smoke setting")
    parser.add_argument("--results", type=Path, help="also write the section into this file")
    parser.add_argument(
        "--figures", type=Path, help="copy the PNGs here (linked from --results' section)"
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.budget_scale < 1:
        raise SystemExit(f"--budget-scale must be at least 1, got {args.budget_scale}")
    plans = TINY_PLANS if args.tiny else StudyConfig().plans
    plans = tuple(p for p in plans if args.tiny or p.dataset in args.datasets)
    plans = tuple(
        dataclasses.replace(
            p,
            epoch_iters=p.epoch_iters * args.budget_scale,
            image_size=p.image_size if args.image_size is None else args.image_size,
        )
        for p in plans
    )
    cfg = StudyConfig(
        plans=plans,
        methods=tuple(args.methods),
        seeds=tuple(args.seeds),
        teacher=args.teacher,
        student=args.student,
        out_dir=args.out_dir,
        device=args.device,
        progress=args.progress,
    )
    if args.tiny:
        cfg.distill = tiny_distill(cfg.distill)
    command = "python bench/accuracy.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    commit = checkout_commit()  # the code that runs, whatever is committed while it runs
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        teachers, runs = run_study(cfg, args.jobs, args.overwrite)
    except ConfigError as err:
        raise SystemExit(f"accuracy: {err}") from None
    minutes = (time.perf_counter() - start) / 60
    load_after = os.getloadavg()

    out = Path(cfg.out_dir)
    plot_accuracy_vs_time(cfg, runs, out / "accuracy_vs_time.png")
    for plan in cfg.plans:
        for method in cfg.methods:
            if METHODS[method].kind == DATA_FREE:
                grid = out / plan.dataset / method / f"seed{cfg.seeds[0]}" / "samples.png"
                shutil.copyfile(grid, out / f"samples_{plan.dataset}_{method}.png")
    device = resolve_device(cfg.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU"
    shared = max(load_before[0], load_after[0]) > (os.cpu_count() or 1)
    facts = (
        f"Commit `{commit}`, {platform.machine()} CPU with {os.cpu_count()} cores, "
        f"{args.jobs} process(es) of {args.threads} torch thread(s), torch {torch.__version__}, "
        f"{gpu}. Whole study {minutes:.1f} min; 1-minute load average {load_before[0]:.1f} at "
        f"the start, {load_after[0]:.1f} at the end"
        + (" (above the core count: wall times inflated)." if shared else ".")
    )
    figures = out if args.figures is None else args.figures
    if args.results is not None:
        figures.mkdir(parents=True, exist_ok=True)
        if figures.resolve() != out.resolve():
            for png in out.glob("*.png"):
                shutil.copyfile(png, figures / png.name)
            shutil.copyfile(out / "runs.csv", figures / "accuracy_runs.csv")
        link = os.path.relpath(figures, args.results.parent)
        replace_section(args.results, section(cfg, teachers, runs, command, facts, link))
    text = section(cfg, teachers, runs, command, facts, ".")
    (out / "study.md").write_text(text + "\n")
    print(text)
    print(f"study: done in {minutes:.1f} min, outputs in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
