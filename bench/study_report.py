"""The accuracy study's outputs: the Markdown table with its verdicts, the plot of accuracy
against wall time, and the section of bench/RESULTS.md they go into."""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

from matplotlib.figure import Figure

from bench.study import DATA_FREE, METHODS, RunResult, StudyConfig, TeacherResult


def checkout_commit() -> str:
    """``git rev-parse HEAD``, marked ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _group(runs: list[RunResult], dataset: str, method: str) -> list[RunResult]:
    return [r for r in runs if r.dataset == dataset and r.method == method]


def summary_table(cfg: StudyConfig, teachers: list[TeacherResult], runs: list[RunResult]) -> str:
    """The Markdown table: one row per method, final accuracy mean ± std and mean wall time per
    dataset, then one verdict line per (dataset, baseline) comparing DDAD beyond the spread."""
    datasets = [p.dataset for p in cfg.plans]
    head = "| method | " + " | ".join(f"{d} acc % | {d} wall s" for d in datasets) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(datasets)]
    cells = [f"{t.acc:.2f} | {t.seconds:.0f}" for t in teachers]
    lines.append(f"| teacher ({cfg.teacher}) | " + " | ".join(cells) + " |")
    for method in cfg.methods:
        cells = []
        for d in datasets:
            group = _group(runs, d, method)
            acc, spread = mean_std([r.final_acc for r in group])
            seconds = statistics.fmean(r.seconds for r in group)
            cells.append(f"{acc:.2f} ± {spread:.2f} | {seconds:.0f}")
        lines.append(f"| {METHODS[method].label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(verdicts(cfg, runs)) + "\n"


def verdicts(cfg: StudyConfig, runs: list[RunResult]) -> list[str]:
    """For each dataset and data-free baseline: whether DDAD's mean exceeds the baseline's by more
    than the sum of their standard deviations (the mean ± std intervals do not overlap)."""
    if "ddad" not in cfg.methods:
        return []
    out = []
    for plan in cfg.plans:
        ours, ours_sd = mean_std([r.final_acc for r in _group(runs, plan.dataset, "ddad")])
        for method in cfg.methods:
            if method == "ddad" or METHODS[method].kind != DATA_FREE:
                continue
            acc, sd = mean_std([r.final_acc for r in _group(runs, plan.dataset, method)])
            gap = ours - acc
            word = "beyond the spread" if gap > ours_sd + sd else "NOT beyond the spread"
            out.append(
                f"- {plan.dataset}: DDAD - {method} = {gap:+.2f} points, spread "
                f"{ours_sd:.2f} + {sd:.2f}: {word}"
            )
    return out


def plot_accuracy_vs_time(cfg: StudyConfig, runs: list[RunResult], path: Path) -> None:
    """One panel per dataset: each method's test accuracy after each epoch against wall time
    (both averaged over seeds)."""
    fig = Figure(figsize=(6 * len(cfg.plans), 4.5))
    axes = fig.subplots(1, len(cfg.plans), squeeze=False)[0]
    for ax, plan in zip(axes, cfg.plans, strict=True):
        for method in cfg.methods:
            curves = [r.curve for r in _group(runs, plan.dataset, method)]
            n = min(len(c) for c in curves)
            seconds = [statistics.fmean(c[i].seconds for c in curves) for i in range(n)]
            acc = [statistics.fmean(c[i].acc for c in curves) for i in range(n)]
            style = "-o" if METHODS[method].kind == DATA_FREE else "--s"
            ax.plot(seconds, acc, style, markersize=3, label=method)
        ax.set(xlabel="wall time (s)", ylabel="test accuracy (%)", title=plan.dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


SECTION_BEGIN = "<!-- accuracy-study: begin (written by bench/accuracy.py) -->"
SECTION_END = "<!-- accuracy-study: end -->"


def budget_lines(cfg: StudyConfig) -> list[str]:
    """One Markdown bullet per dataset: image size, teacher training and the student budget (a
    method with student steps of its own per iteration, e.g. replay's, named with its count)."""
    steps = cfg.distill.student_steps
    own = {m: METHODS[m].overrides.get("student_steps", steps) for m in cfg.methods}
    own = {m: n for m, n in own.items() if n != steps}
    out = []
    for p in cfg.plans:
        size = "native size" if p.image_size is None else f"{p.image_size}x{p.image_size}"
        iterations = p.epochs * p.epoch_iters
        others = "".join(
            f"; {m}: {n} student steps per iteration = {iterations * n}" for m, n in own.items()
        )
        out.append(
            f"- {p.dataset} ({size}): teacher {p.teacher_epochs} epochs; every method "
            f"{p.epochs} epochs x {p.epoch_iters} iterations x {steps} student "
            f"steps = {iterations * steps} student steps of {p.batch_size} images{others} "
            f"(data-free rows: + {iterations} generator steps)"
        )
    return out


def section(
    cfg: StudyConfig,
    teachers: list[TeacherResult],
    runs: list[RunResult],
    command: str,
    facts: str,
    figures: str,
) -> str:
    """The RESULTS.md section: command, facts (commit, machine, wall time), budgets, the table,
    the verdicts, the plot and the sample grids (image links relative to ``figures``)."""
    d = cfg.distill
    grids = [m for m in cfg.methods if METHODS[m].kind == DATA_FREE]
    samples = [  # no grids (and no empty table) when the run has no data-free method
        "Generated samples (first seed, after training):",
        "",
        "| dataset | " + " | ".join(grids) + " |",
        "|---|" + "---|" * len(grids),
        *(
            f"| {p.dataset} | "
            + " | ".join(f"![{m}]({figures}/samples_{p.dataset}_{m}.png)" for m in grids)
            + " |"
            for p in cfg.plans
        ),
    ]
    return "\n".join(
        [
            SECTION_BEGIN,
            "## Accuracy study: does the dual discriminator pay?",
            "",
            *command_and_facts(command, facts),
            f"{cfg.teacher} teacher -> {cfg.student} student; seeds {list(cfg.seeds)}; the final "
            "epoch's accuracy on the whole real test split (no model selection on it), mean ± "
            "sample std over seeds; wall s = mean seconds per run (data loading, training and the "
            f"per-epoch evaluations). Shared settings: batch as below, nz {d.nz}, ngf {d.ngf}, "
            f"{d.student_optimizer.upper()} lr {d.lr_student} (student), "
            f"Adam lr {d.lr_generator} (generator), "
            f"{d.student_steps} student steps per generator step, {d.schedule} schedule, "
            f"lambda_bn {d.lambda_bn} (DDAD).",
            "",
            *budget_lines(cfg),
            "",
            summary_table(cfg, teachers, runs),
            f"![accuracy against wall time]({figures}/accuracy_vs_time.png)",
            "",
            *(samples if grids else []),
            SECTION_END,
        ]
    )


def command_and_facts(command: str, facts: str) -> list[str]:
    """A section's opening lines: the command that wrote it, in a code block, then its facts."""
    return ["```", f"$ {command}", "```", "", facts, ""]


def replace_section(path: Path, text: str) -> None:
    """Put ``text`` (a whole section: its first line the begin marker, its last the end marker)
    in place of the section between the same markers in the Markdown file ``path``, or append
    it when the file has none."""
    begin, end = text.split("\n", 1)[0], text.rsplit("\n", 1)[-1]
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
        new = head + text + tail
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + text + "\n"
    path.write_text(new)
