"""bench/time_to_accuracy.py: reading a curve at a time and to a target, the table's figures from
known curves, and a tiny run that writes its section, records its runs and does not run them
again."""

import csv
import math
import subprocess
import sys
from pathlib import Path

from bench.study import TINY_PLANS, CurvePoint, RunResult, StudyConfig
from bench.time_report import RunSpec, acc_at, comparisons, equal_time, time_table, time_to

ROOT = Path(__file__).resolve().parents[1]


def curve(*points: tuple[float, float]) -> list[CurvePoint]:
    """(CPU seconds, accuracy) pairs as a curve whose wall time is twice its CPU time."""
    return [CurvePoint(2 * t, t, acc) for t, acc in points]


def result(method: str, seed: int, points: list[CurvePoint]) -> RunResult:
    last = points[-1]
    best = max(p.acc for p in points)
    return RunResult("digits", method, seed, last.acc, best, last.seconds, last.cpu_seconds, points)


def test_acc_at_is_the_last_evaluation_done_by_then():
    c = curve((10, 50.0), (20, 70.0), (30, 60.0))
    assert math.isnan(acc_at(c, 9.9))
    assert (acc_at(c, 10), acc_at(c, 25), acc_at(c, 1e9)) == (50.0, 70.0, 60.0)


def test_time_to_is_the_first_evaluation_at_or_above_the_target():
    c = curve((10, 50.0), (20, 70.0), (30, 80.0))
    assert (time_to(c, 50.0), time_to(c, 70.5), time_to(c, 80.0)) == (10, 30, 30)
    assert time_to(c, 80.1) == math.inf


def known_runs() -> dict:
    """Plain DDAD reaching 80 at 100 and 120 s; replay at 30 and never; KD at 20 and 40 s."""
    plain, replay, kd = RunSpec("ddad", 10), RunSpec("ddad+replay", 4), RunSpec("kd-real", 4)
    return {
        (plain, 0): result("ddad", 0, curve((50, 60.0), (100, 80.0), (150, 82.0))),
        (plain, 1): result("ddad", 1, curve((60, 55.0), (120, 80.5), (180, 81.0))),
        (replay, 0): result("ddad+replay", 0, curve((15, 70.0), (30, 81.0), (45, 83.0))),
        (replay, 1): result("ddad+replay", 1, curve((15, 65.0), (30, 75.0), (45, 79.0))),
        (kd, 0): result("kd-real", 0, curve((20, 84.0), (40, 85.0))),
        (kd, 1): result("kd-real", 1, curve((20, 83.0), (40, 86.0))),
    }


def test_the_table_reads_every_method_at_the_longest_mean_run_time_but_the_baselines():
    runs = known_runs()
    specs = [RunSpec("ddad", 10), RunSpec("ddad+replay", 4), RunSpec("kd-real", 4)]
    at = equal_time(runs, specs)
    assert at == 45.0  # replay's runs end at 45 s, KD's at 40; plain's (the baseline) at 165
    cfg = StudyConfig(plans=TINY_PLANS)
    table = time_table(cfg, runs, specs, 80.0, at).splitlines()
    # plain: not evaluated by 45 s on either seed; replay: 83 and 79 by then; KD: 85 and 86
    assert table[2].endswith("| 81.50 ± 0.71 | 165 | not evaluated yet | 110 | 2/2 |")
    assert table[3].endswith("| 81.00 ± 2.83 | 45 | 81.00 ± 2.83 | 30 | 1/2 |")
    assert table[4].endswith("| 85.50 ± 0.71 | 40 | 85.50 ± 0.71 | 20 | 2/2 |")
    steps = TINY_PLANS[0].epochs * TINY_PLANS[0].epoch_iters * cfg.distill.student_steps
    assert f"| {10 * steps} | " in table[2]
    assert f"| {4 * steps * 2} | " in table[3]  # replay: 10 student steps per iteration, not 5
    assert comparisons(runs, specs, 80.0, at) == [
        "- ddad+replay x4: 80.00% in 30 CPU s (1/2 seeds), 0.27 of ddad x10's 110 s; "
        "at 45 s, -4.50 points against kd-real x4"
    ]


def test_a_tiny_run_writes_its_section_and_does_not_run_a_recorded_run_again(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Measured results\n\nkept\n")
    argv = ["--dataset", "digits", "--tiny", "--seeds", "0", "--runs", "ddad:1", "ddad+replay:2"]
    argv += ["--jobs", "1", "--out-dir", str(tmp_path / "tta")]
    argv += ["--study-dir", str(tmp_path / "study"), "--results", str(results)]
    argv += ["--figures", str(tmp_path / "figures")]

    def run() -> subprocess.CompletedProcess:
        script = str(ROOT / "bench" / "time_to_accuracy.py")
        return subprocess.run(
            [sys.executable, script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    done = run()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "0 runs recorded, 2 to run" in done.stdout
    with (tmp_path / "tta" / "digits" / "curves.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    epochs = TINY_PLANS[0].epochs
    assert [(r["method"], r["scale"], r["epoch"]) for r in rows] == [
        ("ddad", "1", str(e)) for e in range(1, epochs + 1)
    ] + [("ddad+replay", "2", str(e)) for e in range(1, 2 * epochs + 1)]
    assert all(float(r["cpu_seconds"]) > 0 for r in rows)
    assert (tmp_path / "tta" / "x2" / "digits" / "ddad+replay" / "seed0" / "last.pt").exists()
    text = results.read_text()
    assert text.startswith("# Measured results\n\nkept\n")
    assert text.count("<!-- time-to-accuracy digits: begin") == 1
    assert "| ddad+replay x2 (DDAD with replay" in text
    assert "![accuracy against CPU time](figures/time_to_accuracy_digits.png)" in text
    assert (tmp_path / "figures" / "time_to_accuracy_digits.png").stat().st_size > 1000

    again = run()
    assert again.returncode == 0, again.stderr[-2000:]
    assert "2 runs recorded, 0 to run" in again.stdout
    assert results.read_text().count("<!-- time-to-accuracy digits: begin") == 1


def test_a_bad_run_spec_is_one_line():
    script = str(ROOT / "bench" / "time_to_accuracy.py")
    done = subprocess.run(
        [sys.executable, script, "--runs", "ddad:0"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].endswith("got 'ddad:0'")
