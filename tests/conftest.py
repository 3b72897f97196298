"""Shared fixtures: a small digits teacher trained once per test session."""

import dataclasses

import pytest

from ddad_fast.teacher import TeacherConfig, train_teacher
from ddad_fast.trainer import DistillConfig

TINY_TEACHER = TeacherConfig(
    model="smallcnn", dataset="digits", epochs=3, batch_size=64, lr=0.05, progress=False
)


@pytest.fixture(scope="session")
def digits_teacher(tmp_path_factory):
    """Path of a smallcnn teacher.pt trained for 3 epochs on digits (well above chance)."""
    out = tmp_path_factory.mktemp("teacher")
    train_teacher(dataclasses.replace(TINY_TEACHER, out_dir=str(out)))
    return out / "teacher.pt"


@pytest.fixture
def tiny_distill(digits_teacher, tmp_path):
    """A DistillConfig small enough for a few seconds of CPU: digits, smallcnn -> tinycnn."""
    return DistillConfig(
        teacher_ckpt=str(digits_teacher),
        student="tinycnn",
        dataset="digits",
        out_dir=str(tmp_path / "run"),
        epochs=3,
        epoch_iters=4,
        student_steps=2,
        batch_size=32,
        nz=16,
        ngf=8,
        device="cpu",
        progress=False,
    )
