"""What last.pt and metrics.csv record is true: the teacher by its weights, the final score beside
the final weights, each epoch's own rates, the seconds across resumptions; and a finished run
resumes to print its result or to go on for more epochs."""

import csv
import dataclasses
import math
import re
import shutil
from pathlib import Path

import pytest
from conftest import assert_same_tensors, distill_argv, run_weights

from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint, save_atomic
from ddad_fast.cli import main
from ddad_fast.metrics import read_metrics


def _resume(cfg, capsys, **changes) -> tuple[int, str]:
    """``ddad distill --resume`` in-process: (exit status, stdout + stderr)."""
    status = main(distill_argv(dataclasses.replace(cfg, resume=True, **changes)))
    out = capsys.readouterr()
    return status, out.out + out.err


def _other_teacher(teacher: Path, to: Path) -> None:
    """A copy of ``teacher`` with one weight changed by a hair."""
    record = load_checkpoint(teacher)
    first = next(iter(record["state_dict"]))
    record["state_dict"][first] = record["state_dict"][first] + 1e-6
    save_atomic(record, to)


def test_resume_knows_the_teacher_by_its_weights_not_its_path(tiny_distill, tmp_path, capsys):
    here, there = tmp_path / "teacher.pt", tmp_path / "moved" / "teacher.pt"
    there.parent.mkdir()
    shutil.copy(tiny_distill.teacher_ckpt, here)
    cfg = dataclasses.replace(tiny_distill, teacher_ckpt=str(here), epochs=2)
    build_trainer(cfg).fit(stop_after=1)
    last = Path(cfg.out_dir) / "last.pt"
    before = last.read_bytes()
    shutil.copy(here, there)  # the same teacher, elsewhere
    _other_teacher(there, here)  # another teacher, where the first one was
    status, out = _resume(cfg, capsys)
    assert status == 2 and out.count("\n") == 1
    assert re.search(r"ddad: error: cannot resume from .*last.pt: its run distilled another", out)
    assert last.read_bytes() == before
    assert _resume(cfg, capsys, teacher_ckpt=str(there))[0] == 0


def test_a_last_pt_without_a_teacher_hash_still_checks_the_path(tiny_distill, tmp_path, capsys):
    cfg = dataclasses.replace(tiny_distill, epochs=2)
    build_trainer(cfg).fit(stop_after=1)
    last = Path(cfg.out_dir) / "last.pt"
    ckpt = load_checkpoint(last)
    del ckpt["teacher_sha256"], ckpt["seconds"]  # as written before they were recorded
    save_atomic(ckpt, last)
    moved = shutil.copy(cfg.teacher_ckpt, tmp_path / "moved.pt")
    status, out = _resume(cfg, capsys, teacher_ckpt=str(moved))
    assert status == 2 and "settings changed (teacher_ckpt:" in out
    assert _resume(cfg, capsys)[0] == 0


def test_last_pt_holds_the_final_score_and_the_metrics_the_epochs_own_rates(tiny_distill, capsys):
    cfg = dataclasses.replace(tiny_distill, epochs=5, schedule="step")  # x0.1 after 1 and 2
    assert main(distill_argv(cfg)) == 0
    rows = read_metrics(Path(cfg.out_dir) / "metrics.csv")
    factors = [1, 0.1, 0.01, 0.01, 0.01]  # the rate each epoch trained with
    assert [r["lr_student"] for r in rows] == pytest.approx([cfg.lr_student * f for f in factors])
    assert [r["lr_generator"] for r in rows] == pytest.approx(
        [cfg.lr_generator * f for f in factors]
    )
    last = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    best = load_checkpoint(Path(cfg.out_dir) / "best.pt")
    assert last["model"]["test_acc"] == pytest.approx(rows[-1]["student_acc"], abs=1e-3)
    assert best["test_acc"] == pytest.approx(max(r["student_acc"] for r in rows), abs=1e-3)
    assert last["best_acc"] == best["test_acc"]


@pytest.mark.parametrize("clock", ["seconds", "cpu_seconds"])
def test_seconds_go_on_across_a_resumption(tiny_distill, clock):
    build_trainer(tiny_distill).fit(stop_after=1)
    last = Path(tiny_distill.out_dir) / "last.pt"
    ckpt = load_checkpoint(last)
    assert 0 < ckpt[clock] < 1000
    ckpt[clock] = 1000.0  # as if the first process had run for 1000 s
    save_atomic(ckpt, last)
    result = build_trainer(dataclasses.replace(tiny_distill, resume=True)).fit()
    seconds = [r[clock] for r in read_metrics(Path(tiny_distill.out_dir) / "metrics.csv")]
    assert seconds[0] < 1000 <= seconds[1] <= seconds[2]
    if clock == "seconds":  # (CPU seconds of several threads may pass the wall time)
        assert seconds[2] <= result.seconds


def test_a_run_resumed_from_metrics_without_cpu_seconds_adds_the_column(tiny_distill):
    build_trainer(tiny_distill).fit(stop_after=1)
    path = Path(tiny_distill.out_dir) / "metrics.csv"
    with path.open(newline="") as f:  # as written before the column existed
        rows = [{k: v for k, v in r.items() if k != "cpu_seconds"} for r in csv.DictReader(f)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    build_trainer(dataclasses.replace(tiny_distill, resume=True)).fit()
    cpu = [r["cpu_seconds"] for r in read_metrics(path)]
    assert math.isnan(cpu[0]) and 0 < cpu[1] <= cpu[2]


def test_a_finished_run_resumed_prints_its_result_and_more_epochs_extend_it(
    tiny_distill, tmp_path, capsys, one_thread
):
    straight = dataclasses.replace(tiny_distill, out_dir=str(tmp_path / "straight"))
    build_trainer(straight).fit()  # 3 epochs
    cfg = dataclasses.replace(tiny_distill, epochs=2)
    assert main(distill_argv(cfg)) == 0
    finished = capsys.readouterr().out
    status, out = _resume(cfg, capsys)
    score = re.search(r"student (\d+\.\d\d)%", out)
    assert status == 0 and score and score[0] in finished and "nan" not in out
    status, out = _resume(cfg, capsys, epochs=1)
    assert status == 2 and "settings changed (epochs: 2 -> 1)" in out
    status, out = _resume(cfg, capsys, epochs=3)
    assert status == 0 and "after 3 epochs" in out
    assert_same_tensors(
        run_weights(Path(cfg.out_dir) / "last.pt"), run_weights(Path(straight.out_dir) / "last.pt")
    )
    rows = read_metrics(Path(cfg.out_dir) / "metrics.csv")
    straight_rows = read_metrics(Path(straight.out_dir) / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["loss_student"] for r in rows] == [r["loss_student"] for r in straight_rows]
