"""Every bad input to ``ddad teacher``, ``ddad distill`` and ``ddad eval`` is refused in one line:
exit status 2, ``ddad: error: ...`` alone on stderr, no traceback, and no file of a prepared
workspace (a finished distillation run, a teacher's folder, assorted files) changed.

The cases are generated: every numeric setting with values out of range, non-finite or not a
number; every choice with a name that is no choice; every path flag with a missing file, a folder,
an empty file, garbage and a file of another kind; plus flag combinations. They run in-process
(``cli.main``), one in a real process as well.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_DISTILL, TINY_TEACHER, distill_argv, file_hashes, teacher_argv

from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint, save_atomic
from ddad_fast.cli import main

DISTILL_INTS = ["epochs", "epoch-iters", "student-steps", "batch-size", "nz", "ngf", "check-every"]
DISTILL_FLOATS = ["lr-student", "lr-generator", "weight-decay"] + [
    f"lambda-{term}" for term in ("bn", "onehot", "entropy", "adv", "activation")
]
TEACHER_INTS = ["epochs", "batch-size"]
TEACHER_FLOATS = ["lr", "weight-decay"]


def _setting(flag: str) -> str:
    return flag.replace("-", "_")


def _numeric_cases(command: str, ints: list[str], floats: list[str]) -> list[tuple]:
    """(id, command, extra flags, what the error must say) for each numeric flag."""
    cases = []
    for flag in ints:
        for value in ("0", "-3"):
            cases.append((command, [f"--{flag}", value], f"{_setting(flag)} must be at least"))
        for value in ("x", "1.5"):
            cases.append((command, [f"--{flag}", value], "invalid int value"))
    for flag in floats:
        cases.append((command, [f"--{flag}", "-1"], f"{_setting(flag)} must be non-negative"))
        for value in ("nan", "inf", "-inf"):  # argparse takes "-inf" alone for a flag: "=-inf"
            cases.append((command, [f"--{flag}={value}"], f"{_setting(flag)} must be a finite"))
        cases.append((command, [f"--{flag}", "x"], "invalid float value"))
    for value in ("-1", "1", "nan"):
        cases.append((command, ["--momentum", value], "momentum must be"))
    return cases


# Paths in capitals are the workspace's (see ``workspace``).
COMBINED = [
    ("distill", ["--schedule", "bogus"], "unknown schedule 'bogus'"),
    ("distill", ["--step-every", "-1"], "step_every must be non-negative"),
    ("distill", ["--step-every", "5", "--schedule", "none"], "step_every applies to the step"),
    ("distill", ["--milestones", "1"], "milestones apply to the step schedule only, not 'none'"),
    ("distill", ["--schedule", "step", "--milestones", "0"], "milestones must be positive, got 0"),
    ("distill", ["--schedule", "step", "--epochs", "9", "--milestones", "3", "3"], "increasing"),
    ("distill", ["--schedule", "step", "--epochs", "9", "--milestones", "5", "2"], "increasing"),
    ("distill", ["--schedule", "step", "--milestones", "1"], "milestones must be below epochs (1)"),
    (
        "distill",
        ["--schedule", "step", "--epochs", "9", "--milestones", "3", "--step-every", "2"],
        "give milestones or step_every, not both",
    ),  # fmt: skip
    ("distill", ["--milestones", "x"], "argument --milestones: invalid int value: 'x'"),
    ("distill", ["--milestones", "1.5"], "argument --milestones: invalid int value: '1.5'"),
    ("distill", ["--milestones"], "argument --milestones: expected at least one argument"),
    ("distill", ["--step-gamma", "0"], "step_gamma must be in (0, 1], got 0.0"),
    ("distill", ["--step-gamma", "2"], "step_gamma must be in (0, 1], got 2.0"),
    ("distill", ["--step-gamma", "nan"], "step_gamma must be a finite number"),
    ("distill", ["--seed", str(10**23)], "seed must fit in 64 bits, got 1000000000000000000000"),
    ("teacher", ["--seed", str(2**63)], "seed must fit in 64 bits, got 9223372036854775808"),
    ("distill", ["--ngf", "100000000"], "out of memory (["),  # an 800 GB generator
    ("distill", ["--step-gamma", "0.3"], "step_gamma applies to the step schedule only"),
    ("distill", ["--recipe", "nope"], "unknown recipe 'nope'; choose one of ddad, dfad-cifar10"),
    ("distill", ["--recipe"], "argument --recipe: expected one argument"),
    ("distill", ["--recipe", "dfad-camvid"], "has model='smallcnn' but this run needs model='deep"),
    ("distill", ["--nan-retries", "-1"], "nan_retries must be non-negative"),
    ("distill", ["--batch-size", "1"], "batch_size must be at least 2"),
    ("distill", ["--student-optimizer", "rmsprop"], "student_optimizer must be sgd or adam"),
    ("distill", ["--backend", "nope"], "unknown backend 'nope'"),
    ("distill", ["--task", "xx"], "unknown task 'xx'"),
    ("distill", ["--seg-generator-bn"], "seg_generator_bn applies to --task seg only"),
    ("distill", ["--student", "nope"], "unknown model 'nope'"),
    ("distill", ["--dataset", "nope"], "unknown dataset 'nope'"),
    ("distill", ["--device", "gpu"], "unknown device 'gpu'"),
    ("distill", ["--device", ""], "unknown device ''"),
    ("distill", ["--device", "meta"], "unknown device 'meta'"),
    ("distill", ["--device", "cuda:x"], "device 'cuda:x'"),
    ("distill", ["--image-size", "0"], "image_size must be positive"),
    ("distill", ["--image-size", "-8"], "image_size must be positive"),
    ("distill", ["--image-size", "10"], "image_size must be a multiple of 4"),
    ("distill", ["--image-size", "12"], "has image_size=8 but this run needs image_size=12"),
    ("distill", ["--teacher-ckpt", "MISSING"], "does not exist"),
    ("distill", ["--teacher-ckpt", "FOLDER"], "is a directory, not a checkpoint file"),
    ("distill", ["--teacher-ckpt", "EMPTY"], "is truncated or corrupt"),
    ("distill", ["--teacher-ckpt", "NOTES"], "is truncated or corrupt"),
    ("distill", ["--teacher-ckpt", "BARE"], "bare state_dict: name its architecture (e.g. --t"),
    ("distill", ["--teacher-ckpt", "RUN/metrics.csv"], "is truncated or corrupt"),
    ("distill", ["--out-dir", "NOTES"], "is a file, not a folder"),
    ("distill", ["--out-dir", "NOTES/run"], "cannot be created: "),
    ("distill", ["--out-dir", ""], "out_dir is empty"),
    ("distill", ["--out-dir", "/proc/ddad-run"], "cannot create out_dir /proc/ddad-run"),
    ("distill", ["--resume"], "--resume continues the run in out_dir and --overwrite replaces"),
    ("distill", ["--no-overwrite"], "unrecognized arguments: --no-overwrite"),
    ("distill", ["--foo"], "unrecognized arguments: --foo"),
    ("distill", ["--epochs"], "argument --epochs: expected one argument"),
    ("teacher", ["--optimizer", "rmsprop"], "optimizer must be sgd or adam"),
    ("teacher", ["--schedule", "bogus"], "unknown schedule 'bogus'"),
    ("teacher", ["--label-smoothing", "1"], "label_smoothing must be in [0, 1)"),
    ("teacher", ["--label-smoothing", "nan"], "label_smoothing must be a finite"),
    ("teacher", ["--model", "nope"], "unknown model 'nope'"),
    ("teacher", ["--dataset", "nope"], "unknown dataset 'nope'"),
    ("teacher", ["--task", "seg"], "a classification model, but the task is seg"),
    ("teacher", ["--image-size", "0"], "image_size must be positive"),
    ("teacher", ["--device", "gpu"], "unknown device 'gpu'"),
    ("teacher", ["--out-dir", "NOTES"], "is a file, not a folder"),
    ("teacher", ["--resume"], "--resume continues the run in out_dir and --overwrite replaces"),
    ("teacher", ["--foo"], "unrecognized arguments: --foo"),
    ("eval", ["--ckpt", "MISSING"], "does not exist"),
    ("eval", ["--ckpt", "FOLDER"], "is a directory, not a checkpoint file"),
    ("eval", ["--ckpt", "EMPTY"], "is truncated or corrupt"),
    ("eval", ["--ckpt", "NOTES"], "is truncated or corrupt"),
    ("eval", ["--ckpt", "BARE"], "bare state_dict: name its architecture (e.g. --model "),
    ("eval", ["--image-size", "0"], "image_size must be positive"),
    ("eval", ["--image-size", "16"], "has image_size=8 but this run needs image_size=16"),
    ("eval", ["--device", "gpu"], "unknown device 'gpu'"),
    ("eval", ["--dataset", "nope"], "unknown dataset 'nope'"),
    ("eval", ["--task", "seg"], "a classification dataset, but the task is seg"),
    ("eval", ["--model", "nope"], "unknown model 'nope'"),
    ("eval", ["--task", "xx"], "argument --task: invalid choice: 'xx'"),
]
# Whole command lines, without the command's base flags.
WHOLE = [
    ([], "the following arguments are required: command"),
    (["nope"], "argument command: invalid choice: 'nope'"),
    (["eval", "--dataset", "digits"], "the following arguments are required: --ckpt"),
    (["distill", "--out-dir", "FOLDER/new"], "needs a trained teacher"),
    (["distill", "--recipe", "nope", "--print-config"], "unknown recipe 'nope'"),
    (
        ["distill", "--recipe", "dfad-cifar10", "--epochs", "100", "--print-config"],
        "milestones must be below epochs (100), got 100 200",
    ),  # fmt: skip
]
# A finished run resumed with what cannot continue it (the base flags, --overwrite swapped for
# --resume).
RESUME = [
    (["--teacher-ckpt", "OTHER_TEACHER"], "its run distilled another teacher"),
    (["--lr-student", "0.5"], "settings changed (lr_student: 0.1 -> 0.5)"),
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--out-dir", "TEACHER"], "is not a ddad_fast distillation checkpoint"),
]
CASES = (
    _numeric_cases("distill", DISTILL_INTS, DISTILL_FLOATS)
    + _numeric_cases("teacher", TEACHER_INTS, TEACHER_FLOATS)
    + COMBINED
)


@pytest.fixture(scope="module")
def workspace(digits_teacher, tmp_path_factory):
    """A folder holding RUN (a finished distillation run), TEACHER (a teacher's folder), and
    NOTES (text), EMPTY (0 bytes), BARE (a bare state_dict), FOLDER, OTHER_TEACHER (the teacher
    with one weight changed); MISSING names nothing."""
    root = tmp_path_factory.mktemp("workspace")
    cfg = dataclasses.replace(
        TINY_DISTILL, teacher_ckpt=str(digits_teacher), out_dir=str(root / "run"), epochs=1
    )
    build_trainer(cfg).fit()
    shutil.copytree(digits_teacher.parent, root / "teacher")
    (root / "notes.txt").write_text("not a checkpoint\n")
    (root / "empty.pt").write_bytes(b"")
    record = load_checkpoint(digits_teacher)
    torch.save(record["state_dict"], root / "bare.pt")
    record["state_dict"]["linear.weight"] += 1e-6
    save_atomic(record, root / "other_teacher.pt")
    (root / "folder").mkdir()
    return root


def _paths(root: Path) -> dict[str, str]:
    names = {
        "RUN": "run",
        "TEACHER": "teacher",
        "NOTES": "notes.txt",
        "EMPTY": "empty.pt",
        "BARE": "bare.pt",
        "FOLDER": "folder",
        "OTHER_TEACHER": "other_teacher.pt",
        "MISSING": "missing.pt",
    }
    return {key: str(root / name) for key, name in names.items()}


def _expand(argv: list[str], root: Path) -> list[str]:
    """The workspace's paths for the capitals in ``argv``."""
    paths = _paths(root)
    out = []
    for arg in argv:
        head, _, tail = arg.partition("/")
        out.append(paths[head] + (f"/{tail}" if tail else "") if head in paths else arg)
    return out


def _base(command: str, root: Path, teacher: Path) -> list[str]:
    """Good flags for ``command`` into the workspace (with --overwrite, so that the bad flag is
    what refuses the run, not the run already there)."""
    if command == "distill":
        cfg = dataclasses.replace(
            TINY_DISTILL, teacher_ckpt=str(teacher), out_dir=str(root / "run"), epochs=1
        )
        return [*distill_argv(cfg), "--overwrite"]
    if command == "teacher":
        cfg = dataclasses.replace(TINY_TEACHER, out_dir=str(root / "teacher"))
        return [*teacher_argv(cfg), "--overwrite"]
    return ["eval", "--ckpt", str(root / "run" / "best.pt"), "--dataset", "digits"]


def _exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's
        return e.code


def _assert_refused_in_one_line(argv, message, root, capsys) -> None:
    before = file_hashes(root)
    status = _exit_status(argv)
    out, err = capsys.readouterr()
    assert status == 2, (argv, out, err)
    assert err.startswith("ddad: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err, err
    assert file_hashes(root) == before


def _case_id(case: tuple) -> str:
    return f"{case[0]}{''.join(case[1]) or '-'}"


@pytest.mark.parametrize(("command", "flags", "message"), CASES, ids=map(_case_id, CASES))
def test_a_bad_flag_is_refused_in_one_line(
    command, flags, message, workspace, digits_teacher, capsys
):
    argv = _base(command, workspace, digits_teacher) + _expand(flags, workspace)
    _assert_refused_in_one_line(argv, message, workspace, capsys)


@pytest.mark.parametrize(("argv", "message"), WHOLE, ids=[" ".join(a) or "-" for a, _ in WHOLE])
def test_a_bad_command_line_is_refused_in_one_line(argv, message, workspace, capsys):
    _assert_refused_in_one_line(_expand(argv, workspace), message, workspace, capsys)


@pytest.mark.parametrize(("flags", "message"), RESUME, ids=[f[0] for f, _ in RESUME])
def test_a_resumption_that_cannot_continue_is_refused_in_one_line(
    flags, message, workspace, digits_teacher, capsys
):
    argv = _base("distill", workspace, digits_teacher)[:-1] + ["--resume"]
    _assert_refused_in_one_line(argv + _expand(flags, workspace), message, workspace, capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_dir_is_refused_in_one_line(workspace, digits_teacher, tmp_path, capsys):
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    argv = _base("distill", workspace, digits_teacher) + ["--out-dir", str(folder)]
    _assert_refused_in_one_line(argv, "cannot write into out_dir", workspace, capsys)


def test_a_real_process_prints_one_line_too(workspace, digits_teacher):
    argv = _base("distill", workspace, digits_teacher) + ["--lambda-bn", "nan"]
    before = file_hashes(workspace)
    run = subprocess.run(
        [sys.executable, "-m", "ddad_fast", *argv], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("ddad: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert file_hashes(workspace) == before
