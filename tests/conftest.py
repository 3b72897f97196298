"""Shared fixtures: a small digits teacher trained once per test session, thread settings.

The suite runs with one intra-op thread: its models and tensors are tiny, for which a second
thread buys nothing, and on a busy 2-core machine two OpenMP threads per process slow every op
tens of times over (measured: a 36-step tiny distillation took 41 s with two threads beside two
other jobs, 0.8 s with one). Tests of the kernels' threading ask for ``two_threads``.
"""

import dataclasses
import getpass
import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.cpu_capability import check_cpu_capability
from ddad_fast.distill_config import DistillConfig
from ddad_fast.errors import ConfigError
from ddad_fast.teacher import TeacherConfig, train_teacher

TINY_TEACHER = TeacherConfig(
    model="smallcnn", dataset="digits", epochs=3, batch_size=64, lr=0.05, progress=False
)

TINY_DISTILL = DistillConfig(
    student="tinycnn",
    dataset="digits",
    epochs=3,
    epoch_iters=4,
    student_steps=2,
    batch_size=32,
    nz=16,
    ngf=8,
    device="cpu",
    progress=False,
    schedule="none",  # the constant rate the tests' thresholds were measured with
)


def run_weights(last_pt: Path) -> dict[str, torch.Tensor]:
    """The student's and the generator's weights in a distillation run's last.pt."""
    ckpt = load_checkpoint(last_pt)
    return {
        **{f"student.{k}": v for k, v in ckpt["model"]["state_dict"].items()},
        **{f"generator.{k}": v for k, v in ckpt["generator"].items()},
    }


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """The same keys and bit-equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def file_hashes(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder``: equal before and after means
    nothing there was changed, added or removed."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def config_argv(command: str, cfg: DistillConfig | TeacherConfig) -> list[str]:
    """``ddad COMMAND`` and the flags that spell ``cfg`` (every field, as the CLI names it)."""
    argv = [command]
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def distill_argv(cfg: DistillConfig) -> list[str]:
    """``ddad distill`` and the flags that spell ``cfg``."""
    return config_argv("distill", cfg)


def teacher_argv(cfg: TeacherConfig) -> list[str]:
    """``ddad teacher`` and the flags that spell ``cfg``."""
    return config_argv("teacher", cfg)


def pytest_configure(config):
    try:
        check_cpu_capability()  # before a kernel set the CPU lacks kills the run with SIGILL
    except ConfigError as e:
        pytest.exit(f"tests: {e}", returncode=2)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # and the subprocesses tests start
    # torch.compile's on-disk cache does not key its C++ on ATEN_CPU_CAPABILITY: after a run with
    # AVX2 kernels, a run with =default is handed AVX2 code and fails to build it (seen). So each
    # kernel set the suite is run under gets a cache of its own (set here, over the default that
    # importing the package may already have written into the environment).
    capability = os.environ.get("ATEN_CPU_CAPABILITY")
    if capability:
        cache = Path(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}_{capability}")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """Path of a smallcnn teacher.pt trained for 3 epochs on digits (well above chance)."""
    out = tmp_path_factory.mktemp("teacher")
    train_teacher(dataclasses.replace(TINY_TEACHER, out_dir=str(out)))
    return out / "teacher.pt"


@pytest.fixture
def tiny_distill(digits_teacher, tmp_path):
    """A DistillConfig small enough for a few seconds of CPU: digits, smallcnn -> tinycnn."""
    return dataclasses.replace(
        TINY_DISTILL, teacher_ckpt=str(digits_teacher), out_dir=str(tmp_path / "run")
    )


@pytest.fixture
def one_thread():
    """One intra-op thread for this test (as its subprocesses get with OMP_NUM_THREADS=1): the
    same float results in and out of process. The suite's default; stated where a test needs it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_threads():
    """Two intra-op threads for this test, so a kernel's parallel split really runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
