"""The time-to-accuracy outputs: each method's accuracy at equal CPU time, its time to reach a
target accuracy, the plot of accuracy against CPU time, and the RESULTS.md section."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import NamedTuple

from matplotlib.figure import Figure

from bench.study import DATA_FREE, METHODS, CurvePoint, RunResult, StudyConfig
from bench.study_report import command_and_facts, mean_std


class RunSpec(NamedTuple):
    """A study method at ``scale`` times the plan's epochs."""

    method: str
    scale: int

    @property
    def label(self) -> str:
        return f"{self.method} x{self.scale}"


Runs = dict[tuple[RunSpec, int], RunResult]  # by (spec, seed)


def acc_at(curve: list[CurvePoint], cpu_seconds: float) -> float:
    """The accuracy of the last evaluation done by ``cpu_seconds`` (nan: none was)."""
    done = [p.acc for p in curve if p.cpu_seconds <= cpu_seconds]
    return done[-1] if done else math.nan


def time_to(curve: list[CurvePoint], target: float) -> float:
    """CPU seconds of the first evaluation at or above ``target`` % (inf: never)."""
    return next((p.cpu_seconds for p in curve if p.acc >= target), math.inf)


def _of(runs: Runs, spec: RunSpec) -> list[RunResult]:
    return [r for (s, _), r in runs.items() if s == spec]


def seed_mean(values: list[float]) -> float:
    """The mean over the seeds evaluated (nan: none was)."""
    done = [v for v in values if not math.isnan(v)]
    return statistics.fmean(done) if done else math.nan


def mean_std_text(values: list[float]) -> str:
    """``mean ± std`` of the seeds evaluated (nan: not yet), and how many were when not all."""
    done = [v for v in values if not math.isnan(v)]
    if not done:
        return "not evaluated yet"
    mean, sd = mean_std(done)
    return f"{mean:.2f} ± {sd:.2f}" + ("" if len(done) == len(values) else f" ({len(done)} seeds)")


def equal_time(runs: Runs, specs: list[RunSpec]) -> float:
    """The time every method is read at: the longest mean run time of the methods other than
    the baseline (the first), so that each of them is read at (or near) its end; the baseline,
    given a longer budget, on its way."""
    return max(statistics.fmean(r.cpu_seconds for r in _of(runs, s)) for s in specs[1:])


def baseline_target(runs: Runs, specs: list[RunSpec], target: float | None) -> float:
    """``target``, or the first (baseline) method's final accuracy, mean over seeds."""
    if target is not None:
        return target
    return statistics.fmean(r.final_acc for r in _of(runs, specs[0]))


def mean_time_to(group: list[RunResult], target: float) -> tuple[float, int]:
    """Mean CPU seconds to ``target`` over the seeds that reach it, and how many do."""
    times = [t for t in (time_to(r.curve, target) for r in group) if math.isfinite(t)]
    return (statistics.fmean(times) if times else math.inf), len(times)


def student_steps(cfg: StudyConfig, spec: RunSpec) -> int:
    """The student steps of one run of ``spec`` on the study's (only) plan."""
    plan = cfg.plans[0]
    per_iteration = METHODS[spec.method].overrides.get("student_steps", cfg.distill.student_steps)
    return int(spec.scale * plan.epochs * plan.epoch_iters * per_iteration)


def time_table(cfg: StudyConfig, runs: Runs, specs: list[RunSpec], target: float, at: float) -> str:
    """One row per method: budget, final accuracy, CPU seconds, accuracy at ``at`` s, time to
    ``target`` %; then one line per method against the baseline (first) and against KD."""
    lines = [
        f"| method | student steps | final acc % | CPU s per run | acc % at {at:.0f} CPU s "
        f"| CPU s to {target:.2f}% | seeds there |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for spec in specs:
        group = _of(runs, spec)
        final, final_sd = mean_std([r.final_acc for r in group])
        equal_text = mean_std_text([acc_at(r.curve, at) for r in group])
        seconds = statistics.fmean(r.cpu_seconds for r in group)
        reach, n = mean_time_to(group, target)
        reach_text = f"{reach:.0f}" if n else "never"
        lines.append(
            f"| {spec.label} ({METHODS[spec.method].label}) | {student_steps(cfg, spec)} | "
            f"{final:.2f} ± {final_sd:.2f} | {seconds:.0f} | {equal_text} | "
            f"{reach_text} | {n}/{len(group)} |"
        )
    return "\n".join(lines) + "\n\n" + "\n".join(comparisons(runs, specs, target, at)) + "\n"


def comparisons(runs: Runs, specs: list[RunSpec], target: float, at: float) -> list[str]:
    """Each data-free method's time to ``target`` against the baseline's, and its accuracy at
    ``at`` s against KD on the real images (when a kd-real run is there)."""
    base = specs[0]
    base_time, base_n = mean_time_to(_of(runs, base), target)
    kd = next((s for s in specs if s.method == "kd-real"), None)
    out = []
    for spec in specs[1:]:
        if METHODS[spec.method].kind != DATA_FREE:
            continue
        group = _of(runs, spec)
        reach, n = mean_time_to(group, target)
        line = f"- {spec.label}: "
        if n and base_n:
            line += f"{target:.2f}% in {reach:.0f} CPU s ({n}/{len(group)} seeds), "
            line += f"{reach / base_time:.2f} of {base.label}'s {base_time:.0f} s"
        else:
            line += f"{target:.2f}% reached by {n}/{len(group)} seeds ({base.label}: {base_n})"
        if kd is not None:
            gap = seed_mean([acc_at(r.curve, at) for r in group]) - seed_mean(
                [acc_at(r.curve, at) for r in _of(runs, kd)]
            )
            line += f"; at {at:.0f} s, {gap:+.2f} points against {kd.label}"
        out.append(line)
    return out


def plot_time_to_accuracy(
    runs: Runs, specs: list[RunSpec], dataset: str, target: float | None, path: Path
) -> float:
    """Each method's test accuracy against CPU seconds (one thin line per seed, the mean over
    seeds bold), the target as a dashed line, the equal time as a dotted one; returns the target."""
    target = baseline_target(runs, specs, target)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for spec, color in zip(specs, [f"C{i}" for i in range(len(specs))], strict=False):
        curves = [r.curve for r in _of(runs, spec)]
        for c in curves:
            ax.plot([p.cpu_seconds for p in c], [p.acc for p in c], color=color, lw=0.6, alpha=0.4)
        n = min(len(c) for c in curves)
        seconds = [statistics.fmean(c[i].cpu_seconds for c in curves) for i in range(n)]
        acc = [statistics.fmean(c[i].acc for c in curves) for i in range(n)]
        ax.plot(seconds, acc, "-o", color=color, lw=1.8, markersize=2.5, label=spec.label)
    ax.axhline(target, color="k", ls="--", lw=0.8, label=f"target {target:.2f}%")
    ax.axvline(equal_time(runs, specs), color="k", ls=":", lw=0.8, label="equal time")
    ax.set(xlabel="CPU seconds (one thread)", ylabel="test accuracy (%)", title=dataset)
    ax.set_ylim(bottom=max(0.0, target - 30))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return target


def time_section(
    cfg: StudyConfig,
    runs: Runs,
    specs: list[RunSpec],
    target: float,
    command: str,
    facts: str,
    png: str,
) -> str:
    """The RESULTS.md section of one dataset: command, facts, the table, the comparisons, the
    plot (linked as ``png``)."""
    plan = cfg.plans[0]
    at = equal_time(runs, specs)
    steps = cfg.distill.student_steps
    marker = f"<!-- time-to-accuracy {plan.dataset}"
    return "\n".join(
        [
            f"{marker}: begin (written by bench/time_to_accuracy.py) -->",
            f"### Time to accuracy: {plan.dataset}",
            "",
            *command_and_facts(command, facts),
            f"{cfg.teacher} teacher -> {cfg.student} student, batch {plan.batch_size}, "
            f"{plan.epoch_iters} iterations x {steps} student steps per epoch, one test "
            f"evaluation per epoch; `xN` = N x {plan.epochs} epochs. Seeds {list(cfg.seeds)}, mean "
            "± sample std. Time = CPU seconds of the run's process (one torch thread), evaluations "
            f"included. Accuracy at equal time = each seed's last evaluation by {at:.0f} s (the "
            "longest mean run time but the baseline's); time to the target = each seed's first "
            "evaluation at or above it, mean over the seeds that get there.",
            "",
            time_table(cfg, runs, specs, target, at),
            f"![accuracy against CPU time]({png})",
            f"{marker}: end -->",
        ]
    )
