"""What the README's fault table promises: kill -9 and resume, SIGTERM, a kill during a checkpoint
write, a non-finite loss, and hostile or broken inputs refused before training."""

import dataclasses
import math
import os
import pickle
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    TINY_DISTILL,
    TINY_TEACHER,
    assert_same_tensors,
    distill_argv,
    run_weights,
    teacher_argv,
)

from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint, save_atomic
from ddad_fast.cli import main
from ddad_fast.data import load_dataset
from ddad_fast.errors import ConfigError
from ddad_fast.metrics import read_metrics
from ddad_fast.model_io import model_record
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer

TESTS = Path(__file__).parent
KILL_SEEDS = range(6)


def _driver(fault: str, n: int, argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """``ddad ARGV`` in a subprocess with ``fault`` injected at ``n`` (fault_driver.py)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(TESTS / "fault_driver.py"), fault, str(n), *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def straight(digits_teacher, tmp_path_factory):
    """The uninterrupted tiny run every interrupted one must end up equal to (one thread)."""
    cfg = dataclasses.replace(
        TINY_DISTILL,
        teacher_ckpt=str(digits_teacher),
        out_dir=str(tmp_path_factory.mktemp("straight")),
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build_trainer(cfg).fit()
    finally:
        torch.set_num_threads(before)
    return cfg


def _resume_to_the_end(cfg) -> None:
    assert main(distill_argv(dataclasses.replace(cfg, resume=True))) == 0


def _metrics(cfg) -> list[dict[str, float]]:
    """The metrics rows without their clock columns."""
    rows = read_metrics(Path(cfg.out_dir) / "metrics.csv")
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]


# ----------------------------------------------------------------------------- kill -9, SIGTERM


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill_9_then_resume_loses_at_most_one_epoch(seed, straight, tmp_path, one_thread, capsys):
    cfg = dataclasses.replace(straight, out_dir=str(tmp_path / "run"))
    rng = random.Random(seed)
    total = cfg.epochs * cfg.epoch_iters
    if seed % 2 == 0:  # a kill between two steps
        fault, n = "kill-at-step", rng.randint(1, total)
    else:  # inside checkpoint write 2, 3 or 4: best.pt or last.pt of epoch 1, then of epoch 2
        fault, n = "kill-in-save", 2 + seed // 2
    killed = _driver(fault, n, distill_argv(cfg))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    out = Path(cfg.out_dir)
    if fault == "kill-in-save":
        assert list(out.glob(".*.tmp")), "the torn write should have left its temporary file"
    last = load_checkpoint(out / "last.pt")  # the previous checkpoint survived, whole
    resumed_from = last["epoch"] * cfg.epoch_iters + last["iteration"]
    _resume_to_the_end(cfg)
    final = load_checkpoint(out / "last.pt")
    assert final["epoch"] == cfg.epochs
    assert_same_tensors(
        run_weights(out / "last.pt"), run_weights(Path(straight.out_dir) / "last.pt")
    )
    assert [r["epoch"] for r in _metrics(cfg)] == [1, 2, 3]
    assert _metrics(cfg) == _metrics(straight)
    assert not list(out.glob(".*.tmp"))  # the next start removed the torn temporary
    done = int(re.search(r"fault: (\d+) steps done", killed.stderr)[1])
    assert done == n or fault == "kill-in-save"
    lost = done - resumed_from
    assert 0 <= lost <= cfg.epoch_iters  # at most one epoch repeated
    where = f"after step {n}" if fault == "kill-at-step" else f"inside checkpoint write {n}"
    with capsys.disabled():
        print(f"\n[figures] seed {seed}: kill -9 {where} ({done}/{total} steps done), resumed "
              f"at step {resumed_from}: {lost} step(s) repeated")  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "signal_name", "status"),
    [("term-at-step", "SIGTERM", 0), ("int-at-step", "SIGINT", 130)],
    ids=["sigterm", "ctrl-c"],
)
def test_a_stop_signal_mid_epoch_checkpoints_and_resumes_exactly(
    fault, signal_name, status, straight, tmp_path, one_thread
):
    cfg = dataclasses.replace(straight, out_dir=str(tmp_path / "run"))
    n = cfg.epoch_iters + 2  # epoch 2, after its second iteration
    run = _driver(fault, n, distill_argv(cfg))
    assert run.returncode == status, run.stderr[-2000:]
    assert f"stopped by {signal_name} at epoch 2, iteration 2" in run.stdout
    assert "--resume" in run.stdout and "Traceback" not in run.stderr
    last = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    assert (last["epoch"], last["iteration"]) == (1, 2)  # nothing lost: the step it was at
    _resume_to_the_end(cfg)
    assert_same_tensors(
        run_weights(Path(cfg.out_dir) / "last.pt"), run_weights(Path(straight.out_dir) / "last.pt")
    )
    assert _metrics(cfg) == _metrics(straight)


def test_a_second_ctrl_c_stops_at_once_in_one_line(straight, tmp_path, one_thread):
    cfg = dataclasses.replace(straight, out_dir=str(tmp_path / "run"))
    run = _driver("int-twice-at-step", cfg.epoch_iters + 2, distill_argv(cfg))
    assert run.returncode == 130, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "stopped by" not in run.stdout
    assert run.stderr.strip().splitlines()[-1].startswith("ddad: interrupted")
    out = Path(cfg.out_dir)
    last = load_checkpoint(out / "last.pt")  # the checkpoint before, whole
    assert (last["epoch"], last["iteration"]) == (1, 0)
    assert not list(out.glob(".*"))  # neither a lock nor a temporary file left
    _resume_to_the_end(cfg)
    straight_last = Path(straight.out_dir) / "last.pt"
    assert_same_tensors(run_weights(out / "last.pt"), run_weights(straight_last))


def test_ctrl_c_stops_the_teacher_at_a_batch_and_resume_ends_equal(
    digits_teacher, tmp_path, one_thread
):
    cfg = dataclasses.replace(TINY_TEACHER, out_dir=str(tmp_path / "teacher"))
    train_set, _, _ = load_dataset(cfg.dataset)
    n = math.ceil(len(train_set) / cfg.batch_size) + 3  # epoch 2, after its third batch
    run = _driver("int-at-batch", n, teacher_argv(cfg))
    assert run.returncode == 130, run.stderr[-2000:]
    line = f"teacher: stopped by SIGINT at epoch 2, batch 3; {cfg.out_dir}/last.pt is written"
    assert run.stdout.startswith(line) and "Traceback" not in run.stderr
    last = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    assert (last["epoch"], last["batch"]) == (1, 3)
    assert main([*teacher_argv(cfg), "--resume"]) == 0
    ours = load_checkpoint(Path(cfg.out_dir) / "teacher.pt")["state_dict"]
    assert_same_tensors(ours, load_checkpoint(digits_teacher)["state_dict"])
    uninterrupted = dataclasses.replace(cfg, out_dir=str(digits_teacher.parent))
    assert _metrics(cfg) == _metrics(uninterrupted)


def test_sigterm_from_outside_gives_exit_0_and_a_loadable_checkpoint(straight, tmp_path):
    cfg = dataclasses.replace(straight, out_dir=str(tmp_path / "run"), epochs=500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddad_fast", *distill_argv(cfg)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = Path(cfg.out_dir) / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # one epoch done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert re.search(r"stopped by SIGTERM (at epoch \d+, iteration \d+|after epoch \d+)", out)
    last = load_checkpoint(Path(cfg.out_dir) / "last.pt")
    assert 1 <= last["epoch"] < cfg.epochs


# ----------------------------------------------------------------------------- non-finite losses


def _poison_generator_from(monkeypatch, first: int, last: int) -> list[int]:
    """Fill a generator weight with NaN before generator steps ``first``..``last`` (1-based)."""
    step = DDADTrainer.generator_step
    calls: list[int] = []

    def poisoned(self):
        calls.append(len(calls) + 1)
        if first <= len(calls) <= last:
            with torch.no_grad():
                next(self.generator.parameters()).fill_(float("nan"))
        return step(self)

    monkeypatch.setattr(DDADTrainer, "generator_step", poisoned)
    return calls


def test_a_nan_in_the_generator_is_rolled_back_and_survived(
    tiny_distill, monkeypatch, capsys, one_thread
):
    cfg = dataclasses.replace(tiny_distill, check_every=2)
    calls = _poison_generator_from(monkeypatch, 7, 7)  # epoch 2, iteration 3
    trainer = build_trainer(cfg)
    result = trainer.fit()
    assert result.epochs == cfg.epochs and trainer.guard.rollbacks == 1
    assert len(calls) == cfg.epochs * cfg.epoch_iters + 2  # steps 7 and 8, once more
    err = capsys.readouterr().err
    assert "non-finite loss at step 7 (epoch 2, iteration 3): student loss" in err
    assert "generator loss nan" in err and "rolled back to step 6 (retry 1 of 3)" in err
    assert all(torch.isfinite(v).all() for v in run_weights(Path(cfg.out_dir) / "last.pt").values())
    rows = read_metrics(Path(cfg.out_dir) / "metrics.csv")
    assert all(all(map(torch.isfinite, map(torch.tensor, r.values()))) for r in rows)


def test_a_loss_that_stays_non_finite_ends_the_run_naming_the_step(
    tiny_distill, monkeypatch, capsys, one_thread
):
    cfg = dataclasses.replace(tiny_distill, check_every=2, nan_retries=2)
    _poison_generator_from(monkeypatch, 3, 10**9)
    assert main(distill_argv(cfg)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ddad: error: non-finite loss at step 3 (epoch 1, iteration 3)")
    assert "generator loss nan" in err[-1] and "gave up after 2 rollback(s)" in err[-1]
    assert load_checkpoint(Path(cfg.out_dir) / "last.pt")["epoch"] == 0  # nothing bad was saved


# ----------------------------------------------------------------------------- hostile inputs


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def _smallcnn(classes=10, channels=1):
    return build_model("smallcnn", classes, channels, 8)


def _evil(path: Path) -> None:
    torch.save({"kind": "ddad_fast.model", "payload": _RunsCode()}, path)


def _truncated(path: Path, teacher: Path) -> None:
    path.write_bytes(teacher.read_bytes()[:4000])


def _record(path: Path, model, name="smallcnn", classes=10, channels=1, size=8) -> None:
    save_atomic(model_record(name, model, classes, channels, size), path)


# Each: (id, how to break the teacher file or the flags, what the one-line error must say).
TEACHER_CASES = [
    ("code-pickle", lambda p, t: _evil(p), "could run code"),
    ("truncated", _truncated, "is truncated or corrupt"),
    ("not-a-checkpoint", lambda p, t: p.write_text("hello"), "is truncated or corrupt"),
    ("empty-file", lambda p, t: p.write_bytes(b""), "is truncated or corrupt"),
    (
        "random-bytes",
        lambda p, t: p.write_bytes(random.Random(0).randbytes(3000)),
        "refused it without running any of it",
    ),
    (
        "plain-pickle-that-runs-code",
        lambda p, t: p.write_bytes(pickle.dumps({"model": _RunsCode()})),
        "refused it without running any of it",
    ),
    ("a-tensor", lambda p, t: torch.save(torch.ones(3), p), "holds a Tensor, not a dict"),
    (
        "wrong-architecture",
        lambda p, t: _record(p, build_model("tinycnn", 10, 1, 8)),
        "does not match the SmallCNN architecture: shape: features.0.weight",
    ),
    (
        "other-class-count",
        lambda p, t: _record(p, _smallcnn(classes=5), classes=5),
        "has num_classes=5 but this run needs num_classes=10 (teacher and dataset class",
    ),
    (
        "other-channels",
        lambda p, t: _record(p, _smallcnn(channels=3), channels=3),
        "has in_channels=3 but this run needs in_channels=1",
    ),
    (
        "bare-state-dict-no-name",
        lambda p, t: torch.save(_smallcnn().state_dict(), p),
        "is a bare state_dict: name its architecture",
    ),
]
FLAG_CASES = [
    ("other-input-size", {"image_size": 16}, "has image_size=8 but this run needs image_size=16"),
    ("student-too-small-input", {"student": "vgg11_bn"}, "vgg11_bn needs images of at least 32"),
    ("cifar10-empty-folder", {"dataset": "cifar10", "data_root": "EMPTY"}, "cifar10: expected"),
    ("caltech-no-classes", {"dataset": "caltech101", "data_root": "CALTECH"}, "no class subf"),
    ("fashion-empty", {"dataset": "fashion-mnist", "data_root": "EMPTY"}, "fashion-mnist: expec"),
    ("cifar10-code-pickle", {"dataset": "cifar10", "data_root": "EVILCIFAR"}, "could run code"),
]


def _ids(cases: list[tuple]) -> list[str]:
    return [case[0] for case in cases]


def _assert_refused_before_training(argv, message, out: Path, capsys, names: str = "") -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddad: error: ") and message in err and names in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (out / "metrics.csv").exists()


@pytest.mark.parametrize(("case", "breaks", "message"), TEACHER_CASES, ids=_ids(TEACHER_CASES))
def test_a_broken_or_hostile_teacher_is_refused_before_training(
    case, breaks, message, tiny_distill, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "teacher.pt"
    breaks(bad, Path(tiny_distill.teacher_ckpt))
    cfg = dataclasses.replace(tiny_distill, teacher_ckpt=str(bad))
    argv = distill_argv(cfg)
    _assert_refused_before_training(argv, message, Path(cfg.out_dir), capsys, names=str(bad))
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.parametrize(("case", "flags", "message"), FLAG_CASES, ids=_ids(FLAG_CASES))
def test_wrong_sizes_and_data_folders_are_refused_before_training(
    case, flags, message, tiny_distill, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "caltech" / "101_ObjectCategories").mkdir(parents=True)
    evil = tmp_path / "evil" / "cifar-10-batches-py"
    evil.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (evil / name).write_bytes(pickle.dumps({b"data": _RunsCode()}))
    roots = {"EMPTY": "empty", "CALTECH": "caltech", "EVILCIFAR": "evil"}
    flags = {k: str(tmp_path / roots[v]) if v in roots else v for k, v in flags.items()}
    cfg = dataclasses.replace(tiny_distill, **flags)
    _assert_refused_before_training(distill_argv(cfg), message, Path(cfg.out_dir), capsys)
    assert not (tmp_path / "pwned.txt").exists()


def _break_last(kind: str, cfg, teacher: Path) -> None:
    """Turn a real run's last.pt into a broken or hostile one."""
    last = Path(cfg.out_dir) / "last.pt"
    if kind == "truncated":
        last.write_bytes(last.read_bytes()[:5000])
    elif kind == "code-pickle":
        _evil(last)
    elif kind == "a-teacher":
        last.write_bytes(teacher.read_bytes())
    elif kind == "wrong-generator":
        ckpt = load_checkpoint(last)
        ckpt["generator"] = Generator(cfg.nz, 2 * cfg.ngf, 1, 8).state_dict()
        save_atomic(ckpt, last)
    elif kind == "missing-entry":
        ckpt = load_checkpoint(last)
        del ckpt["opt_generator"]
        save_atomic(ckpt, last)


RESUME_CASES = [
    ("truncated", "last.pt is truncated or corrupt"),
    ("code-pickle", "could run code"),
    ("a-teacher", "last.pt is not a ddad_fast distillation checkpoint"),
    ("wrong-generator", "last.pt does not match the Generator architecture: shape: l1.0.weight"),
    ("missing-entry", "last.pt is missing its 'opt_generator' entry"),
]


@pytest.mark.parametrize(("kind", "message"), RESUME_CASES, ids=_ids(RESUME_CASES))
def test_a_broken_or_hostile_last_pt_is_refused_on_resume(
    kind, message, tiny_distill, tmp_path, capsys, monkeypatch, one_thread
):
    monkeypatch.chdir(tmp_path)
    cfg = dataclasses.replace(tiny_distill, epochs=1, epoch_iters=1, student_steps=1)
    build_trainer(cfg).fit(stop_after=0)  # writes the last.pt of epoch 0, before any training
    (Path(cfg.out_dir) / "metrics.csv").unlink()
    _break_last(kind, cfg, Path(tiny_distill.teacher_ckpt))
    before = (Path(cfg.out_dir) / "last.pt").read_bytes()
    argv = distill_argv(dataclasses.replace(cfg, resume=True))
    last = str(Path(cfg.out_dir) / "last.pt")
    _assert_refused_before_training(argv, message, Path(cfg.out_dir), capsys, names=last)
    assert (Path(cfg.out_dir) / "last.pt").read_bytes() == before  # left as it was
    assert not (tmp_path / "pwned.txt").exists()


def _direct_trainer(cfg, teacher, student, channels=1):
    _, test_set, info = load_dataset("digits")
    generator = Generator(cfg.nz, cfg.ngf, channels, 8)
    return DDADTrainer(cfg, teacher, student, generator, test_set, info)


def test_teacher_and_student_class_counts_must_agree_before_training(tiny_distill):
    with pytest.raises(ConfigError, match="teacher gives 10 classes but the student 5"):
        _direct_trainer(tiny_distill, _smallcnn(), build_model("tinycnn", 5, 1, 8))


def test_a_model_that_cannot_take_the_images_is_refused_before_training(tiny_distill):
    with pytest.raises(ConfigError, match=r"the teacher \(SmallCNN\) cannot take 1x8x8 images"):
        _direct_trainer(tiny_distill, _smallcnn(channels=3), build_model("tinycnn", 10, 1, 8))
    with pytest.raises(ConfigError, match=r"generator makes \(3, 8, 8\) images .* \(1, 8, 8\)"):
        _direct_trainer(tiny_distill, _smallcnn(), build_model("tinycnn", 10, 1, 8), channels=3)


def test_check_models_fit_leaves_no_trace(tiny_distill):
    """The pre-training forward draws no random numbers and updates no BN statistics."""
    torch.manual_seed(0)
    cfg = tiny_distill
    teacher, student = _smallcnn(), build_model("tinycnn", 10, 1, 8)
    generator = Generator(cfg.nz, cfg.ngf, 1, 8)
    _, test_set, info = load_dataset("digits")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    state = torch.get_rng_state()
    trainer = DDADTrainer(cfg, teacher, student, generator, test_set, info)
    assert torch.equal(torch.get_rng_state(), state) and trainer.student.training
    assert_same_tensors(before, student.state_dict())
