"""The ddad command end to end on tiny settings, and its one-line errors."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import distill_argv, file_hashes

import ddad_fast
from ddad_fast import demo
from ddad_fast.cli import main
from ddad_fast.signals import Stopped
from ddad_fast.teacher import TeacherConfig, cached_teacher, train_teacher

TINY_DISTILL_FLAGS = [
    "--student", "tinycnn", "--dataset", "digits", "--epochs", "1", "--epoch-iters", "2",
    "--student-steps", "1", "--batch-size", "16", "--nz", "8", "--ngf", "4", "--device", "cpu",
    "--no-progress",
]  # fmt: skip


def test_teacher_distill_eval_end_to_end(tmp_path, capsys):
    teacher_dir = tmp_path / "teacher"
    argv = ["teacher", "--model", "tinycnn", "--dataset", "digits", "--epochs", "1",
            "--out-dir", str(teacher_dir), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert re.search(
        r"teacher tinycnn on digits: test accuracy \d+\.\d\d%", capsys.readouterr().out
    )
    run_dir = tmp_path / "run"
    argv = ["distill", "--teacher-ckpt", str(teacher_dir / "teacher.pt"), "--out-dir", str(run_dir)]
    assert main(argv + TINY_DISTILL_FLAGS) == 0
    assert "distill: teacher" in capsys.readouterr().out
    assert (run_dir / "metrics.csv").read_text().startswith("epoch,loss_student,")
    assert main(["eval", "--ckpt", str(run_dir / "best.pt"), "--dataset", "digits"]) == 0
    assert re.search(r"eval: tinycnn from .* on digits test: \d+\.\d\d%", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--ckpt", "no/such.pt", "--dataset", "digits"], "no/such.pt does not exist"),
        (["eval", "--ckpt", "x.pt", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["teacher", "--model", "nope", "--dataset", "digits"], "unknown model 'nope'"),
        (["distill", "--dataset", "digits"], "needs a trained teacher"),
        (["teacher", "--dataset", "cifar10", "--data-root", "/nonexistent"], "cifar10: expected"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddad: error: ") and message in err
    assert "Traceback" not in err


def test_python_dash_m_shows_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "ddad_fast", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("teacher", "distill", "eval", "demo"):
        assert command in out


def test_version_names_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"ddad {ddad_fast.__version__}\n"


def test_distill_help_comes_from_the_config(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    assert "--lambda-bn" in out and "weight of the teacher's BN-statistics term" in out


def test_demo_on_a_tiny_setting_writes_everything_and_reuses_its_teacher(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(demo, "DEMO_TEACHER", dataclasses.replace(demo.DEMO_TEACHER, epochs=1))
    monkeypatch.setattr(
        demo,
        "DEMO_DISTILL",
        dataclasses.replace(demo.DEMO_DISTILL, epochs=2, epoch_iters=2, batch_size=16),
    )
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out), "--no-progress"]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"demo: teacher \d+\.\d\d% student \d+\.\d\d% data-free, \d+s", last_line)
    for name in ("metrics.csv", "samples.png", "curves.png", "best.pt", "last.pt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "teacher" / "teacher.pt").is_file()
    assert main(["demo", "--out-dir", str(out), "--no-progress"]) == 0
    assert "reusing the cached teacher" in capsys.readouterr().out
    # its own runs it replaced; a run of other settings there it leaves as it is
    monkeypatch.setattr(demo, "DEMO_DISTILL", dataclasses.replace(demo.DEMO_DISTILL, epochs=3))
    before = file_hashes(out)
    assert main(["demo", "--out-dir", str(out), "--no-progress"]) == 2
    assert "that is not this demo's" in capsys.readouterr().err
    assert file_hashes(out) == before


def test_demo_teacher_cache_ignores_a_different_setting(tmp_path, monkeypatch):
    cfg = dataclasses.replace(demo.DEMO_TEACHER, epochs=1, out_dir=str(tmp_path), progress=False)
    train_teacher(cfg)
    assert cached_teacher(cfg) == tmp_path / "teacher.pt"
    assert cached_teacher(dataclasses.replace(cfg, lr=0.5)) is None
    assert isinstance(cfg, TeacherConfig)


def test_without_a_terminal_each_epoch_is_one_plain_line(tiny_distill, capsys):
    # pytest's captured stderr is no terminal: the bars stay off, one line per epoch instead
    cfg = dataclasses.replace(tiny_distill, progress=True)
    assert main(distill_argv(cfg)) == 0
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0].split(",")[0] for line in lines] == [
        f"epoch {e}/{cfg.epochs}" for e in (1, 2, 3)
    ]
    assert "loss_student" in lines[0] and "student_acc" in lines[0]
    assert "\r" not in out.err  # no progress bar redraws


def test_distill_writes_its_plots_and_ddad_plot_redraws_them(tiny_distill, tmp_path, capsys):
    assert main(distill_argv(tiny_distill)) == 0
    out = Path(tiny_distill.out_dir)
    for name in ("samples.png", "curves.png"):
        assert (out / name).stat().st_size > 1000
        (out / name).unlink()
    assert main(["plot", str(out)]) == 0
    assert all((out / name).stat().st_size > 1000 for name in ("samples.png", "curves.png"))
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ddad: error:") and "last.pt" in err[0]
    # a metrics.csv gone or damaged: one line, and neither picture redrawn
    samples = (out / "samples.png").read_bytes()
    for damage in ("gone", "epoch,loss\nabc,1\n"):
        if damage == "gone":
            (out / "metrics.csv").unlink()
        else:
            (out / "metrics.csv").write_text(damage)
        assert main(["plot", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "metrics.csv" in err[0], err
        assert (out / "samples.png").read_bytes() == samples


def test_a_stopped_demo_says_to_run_it_again_not_to_resume(tmp_path, monkeypatch, capsys):
    def stopped_teacher(cfg):
        raise Stopped("SIGTERM", "teacher: stopped ...: run the same command with --resume")

    monkeypatch.setattr(demo, "train_teacher", stopped_teacher)
    assert main(["demo", "--out-dir", str(tmp_path / "demo"), "--no-progress"]) == 0  # SIGTERM
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("demo: stopped by SIGTERM; run the same command again")
    assert "--resume" not in out[-1]
