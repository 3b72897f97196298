"""Runs never destroy each other: one run per folder (the lock), no run over a previous one
without --resume or --overwrite, and an --overwrite run that leaves the previous run's files as they
were until its first checkpoint."""

import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_DISTILL, TINY_TEACHER, distill_argv, file_hashes, teacher_argv

from ddad_fast import teacher, trainer
from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.cli import main
from ddad_fast.errors import ConfigError
from ddad_fast.metrics import read_metrics
from ddad_fast.run_folder import LOCK_NAME, RunLock


@pytest.fixture(scope="module")
def finished(digits_teacher, tmp_path_factory):
    """The settings of a finished two-epoch tiny distillation run, and its folder."""
    cfg = dataclasses.replace(
        TINY_DISTILL,
        teacher_ckpt=str(digits_teacher),
        out_dir=str(tmp_path_factory.mktemp("finished")),
        epochs=2,
    )
    build_trainer(cfg).fit()
    return cfg


def _copy(folder: str | Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def _refused(argv: list[str], capsys, *fragments: str) -> str:
    """Run ``ddad ARGV`` in-process: exit 2, one line ``ddad: error:`` holding ``fragments``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddad: error: ") and err.count("\n") == 1, err
    assert all(f in err for f in fragments), err
    return err


def test_a_fresh_run_into_a_finished_run_is_refused_and_changes_nothing(finished, tmp_path, capsys):
    out = _copy(finished.out_dir, tmp_path / "run")
    before = file_hashes(out)
    cfg = dataclasses.replace(finished, out_dir=str(out))
    _refused(distill_argv(cfg), capsys, "already holds a run (last.pt, best.pt, metrics.csv)")
    assert file_hashes(out) == before


def test_a_path_through_a_missing_folder_and_dotdot_is_the_folder_it_leads_to(
    finished, tmp_path, capsys
):
    out = _copy(finished.out_dir, tmp_path / "run")
    before = file_hashes(out)
    cfg = dataclasses.replace(finished, out_dir=str(out / "new" / ".."))
    _refused(distill_argv(cfg), capsys, "already holds a run")
    assert file_hashes(out) == before


def test_the_demo_replaces_no_run_of_other_settings(finished, digits_teacher, tmp_path, capsys):
    distilled = _copy(finished.out_dir, tmp_path / "distilled")  # a distill run: its out-dir
    taught = tmp_path / "taught"
    _copy(digits_teacher.parent, taught / "teacher")  # a teacher run: the demo's teacher folder
    for out in (distilled, taught):
        before = file_hashes(out)
        argv = ["demo", "--out-dir", str(out), "--device", "cpu", "--no-progress"]
        _refused(argv, capsys, "that is not this demo's", "give the demo another --out-dir")
        assert file_hashes(out) == before


def test_a_teacher_into_a_teacher_folder_and_a_distill_into_it_are_refused(
    digits_teacher, tmp_path, capsys, finished
):
    folder = _copy(digits_teacher.parent, tmp_path / "teacher")
    before = file_hashes(folder)
    cfg = dataclasses.replace(TINY_TEACHER, out_dir=str(folder))
    _refused(teacher_argv(cfg), capsys, "already holds a run (last.pt, teacher.pt, metrics.csv)")
    distill = dataclasses.replace(finished, out_dir=str(folder))
    _refused(distill_argv(distill), capsys, "--resume", "--overwrite")
    _refused([*distill_argv(distill), "--resume"], capsys, "not a ddad_fast distillation")
    _refused([*teacher_argv(cfg), "--resume", "--overwrite"], capsys, "give one")
    assert file_hashes(folder) == before


def test_a_run_that_fails_before_its_first_checkpoint_leaves_the_previous_run_whole(
    finished, digits_teacher, tmp_path, monkeypatch, capsys
):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = _copy(finished.out_dir, tmp_path / "run")
    before = file_hashes(out)
    monkeypatch.setattr(trainer, "save_last", disk_full)
    with pytest.raises(OSError, match="No space"):
        main([*distill_argv(dataclasses.replace(finished, out_dir=str(out))), "--overwrite"])
    assert file_hashes(out) == before  # metrics.csv and best.pt included

    folder = _copy(digits_teacher.parent, tmp_path / "teacher")
    before = file_hashes(folder)
    monkeypatch.setattr(teacher._TeacherRun, "save", disk_full)
    cfg = dataclasses.replace(TINY_TEACHER, out_dir=str(folder), epochs=1)
    with pytest.raises(OSError, match="No space"):
        main([*teacher_argv(cfg), "--overwrite"])
    assert file_hashes(folder) == before


def test_overwrite_replaces_the_previous_run(finished, tmp_path, capsys):
    out = _copy(finished.out_dir, tmp_path / "run")
    cfg = dataclasses.replace(finished, out_dir=str(out), seed=1, epochs=1)
    assert main([*distill_argv(cfg), "--overwrite"]) == 0
    last = load_checkpoint(out / "last.pt")
    assert (last["config"]["seed"], last["epoch"]) == (1, 1)
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(out / "metrics.csv")] == [1]
    assert not (out / LOCK_NAME).exists()


def test_a_teacher_over_a_distill_run_leaves_none_of_its_outputs(finished, tmp_path, capsys):
    out = _copy(finished.out_dir, tmp_path / "run")
    for name in ("samples.png", "curves.png", "student.pt"):
        (out / name).write_bytes(b"a previous run's")
    cfg = dataclasses.replace(TINY_TEACHER, out_dir=str(out), epochs=1)
    assert main([*teacher_argv(cfg), "--overwrite"]) == 0
    left = {"best.pt", "student.pt", "samples.png", "curves.png"} & {p.name for p in out.iterdir()}
    assert not left  # none passes for the teacher run's own (ddad eval --ckpt run/best.pt)
    assert (out / "teacher.pt").is_file()


def test_a_held_lock_names_its_process_and_a_stale_one_is_taken_over(tiny_distill, capsys):
    cfg = dataclasses.replace(tiny_distill, epochs=1)
    out = Path(cfg.out_dir)
    out.mkdir()
    holder = f"pid {os.getpid()} on host {socket.gethostname()}"
    with RunLock(out):
        _refused(distill_argv(cfg), capsys, f"{out} is in use by another run ({holder}")
        with pytest.raises(ConfigError, match="in use by another run"):
            build_trainer(cfg).fit()  # the library's own runs take the lock too
        with pytest.raises(ConfigError, match="in use by another run"), RunLock(out):
            pass
    assert not (out / LOCK_NAME).exists()
    (out / LOCK_NAME).write_text("pid 999999 on host gone, since yesterday\n")  # nobody holds it
    assert main(distill_argv(cfg)) == 0
    assert not (out / LOCK_NAME).exists()


def test_two_runs_into_one_folder_one_is_refused_the_other_goes_on(tiny_distill, capsys):
    cfg = dataclasses.replace(tiny_distill, epochs=500)
    running = subprocess.Popen(
        [sys.executable, "-m", "ddad_fast", *distill_argv(cfg)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Path(cfg.out_dir)
    deadline = time.monotonic() + 120
    while len(read_metrics(out / "metrics.csv") if (out / "metrics.csv").exists() else []) < 1:
        assert running.poll() is None and time.monotonic() < deadline, running.stderr.read()
        time.sleep(0.05)
    holder = f"pid {running.pid} on host {socket.gethostname()}"
    for flags in ([], ["--overwrite"], ["--resume"]):
        _refused([*distill_argv(cfg), *flags], capsys, f"in use by another run ({holder}")
    running.send_signal(signal.SIGTERM)
    stdout, stderr = running.communicate(timeout=120)
    assert running.returncode == 0, stderr[-2000:]
    assert "stopped by SIGTERM" in stdout
    last = load_checkpoint(out / "last.pt")
    rows = read_metrics(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == list(range(1, last["epoch"] + 1))
    assert load_checkpoint(out / "best.pt")["epoch"] >= 1
    assert not (out / LOCK_NAME).exists()


def test_a_run_that_fails_at_once_leaves_no_folder_behind(tmp_path):
    with pytest.raises(RuntimeError), RunLock(tmp_path / "runs" / "new"):
        raise RuntimeError("the data did not load")
    assert list(tmp_path.iterdir()) == []
