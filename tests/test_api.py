"""``ddad_fast.distill`` from Python: the README's example runs as written, settings are checked
by name, a tuple-returning teacher is used through its logits, and the records name the class."""

import re
from pathlib import Path

import pytest
import torch
from conftest import TINY_DISTILL
from torch import nn
from torch.utils.data import TensorDataset

import ddad_fast
from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.cli import main
from ddad_fast.data import load_dataset
from ddad_fast.errors import ConfigError
from ddad_fast.models import build_model

README = Path(__file__).resolve().parent.parent / "README.md"
TINY = {
    "epochs": 1,
    "epoch_iters": 2,
    "student_steps": 1,
    "batch_size": 8,
    "nz": 8,
    "ngf": 4,
    "device": "cpu",
    "progress": False,
}


def readme_python_example() -> str:
    """The first ```python block of the README's ``## From Python`` section."""
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_example_runs_and_its_student_loads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(readme_python_example(), "README.md example", "exec"), namespace)
    record = load_checkpoint(tmp_path / "runs/python-example/student.pt")
    assert record["model"] == "readme_example:Student"
    assert namespace["result"].epochs == 2
    assert not (tmp_path / "runs/python-example/best.pt").exists()


def test_ddad_eval_of_a_user_class_says_it_needs_that_class(tmp_path, capsys):
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    teacher = build_model("tinycnn", 10, 1, 8)
    out = tmp_path / "run"
    ddad_fast.distill(teacher, student, 10, (1, 8, 8), out_dir=str(out), **TINY)
    assert main(["eval", "--ckpt", str(out / "student.pt"), "--dataset", "digits"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds a torch.nn.modules.container:Sequential (a model class of your own" in err


def test_unknown_or_argument_settings_are_refused_by_name(tmp_path):
    teacher, student = build_model("tinycnn", 10, 1, 8), build_model("tinycnn", 10, 1, 8)
    with pytest.raises(ConfigError, match="unknown setting 'lr_studnet'; close ones: lr_student"):
        ddad_fast.distill(teacher, student, 10, (1, 8, 8), lr_studnet=0.1)
    with pytest.raises(ConfigError, match="'dataset' is given by distill\\(\\)'s argument 'eval"):
        ddad_fast.distill(teacher, student, 10, (1, 8, 8), dataset="digits")
    with pytest.raises(ConfigError, match="image_shape must be square"):
        ddad_fast.distill(teacher, student, 10, (1, 8, 4))


class LogitsAndFeatures(nn.Module):
    """The digits teacher's architecture, returning (logits, its input flattened)."""

    def __init__(self):
        super().__init__()
        self.net = build_model("smallcnn", 10, 1, 8)

    def forward(self, x):
        return self.net(x), x.flatten(1)


def test_a_tuple_teacher_a_registry_student_and_an_eval_set(digits_teacher, tmp_path):
    teacher = LogitsAndFeatures()
    teacher.net.load_state_dict(load_checkpoint(digits_teacher)["state_dict"])
    _, eval_set, _ = load_dataset("digits")
    out = tmp_path / "run"
    settings = {**TINY, "out_dir": str(out), "seed": TINY_DISTILL.seed}
    _, result = ddad_fast.distill(teacher, "tinycnn", 10, (1, 8, 8), eval_set, **settings)
    assert result.epochs == 1 and 0 <= result.final_acc <= 100
    assert result.teacher_acc > 50  # scored through its logits
    best = load_checkpoint(out / "best.pt")
    assert best["model"] == "tinycnn"
    assert main(["eval", "--ckpt", str(out / "best.pt"), "--dataset", "digits"]) == 0
    resumed = {**settings, "epochs": 2, "resume": True}
    _, result = ddad_fast.distill(teacher, "tinycnn", 10, (1, 8, 8), eval_set, **resumed)
    assert result.epochs == 2


class TinySegmenter(nn.Module):
    """(N, 1, H, W) -> (N, 3, H, W) logit maps, with a BatchNorm layer for the BN term."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1)
        )

    def forward(self, x):
        return self.net(x)


def test_a_segmentation_run_scores_an_eval_set_holding_ignored_pixels(tmp_path):
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (6, 16, 16))
    labels[:, :4] = 255  # DFAD's ignored label: counted nowhere
    eval_set = TensorDataset(torch.randn(6, 1, 16, 16), labels)
    settings = {"epochs": 1, "epoch_iters": 1, "batch_size": 4, "nz": 8, "ngf": 8}
    _, result = ddad_fast.distill(
        TinySegmenter().eval(), TinySegmenter(), 3, (1, 16, 16), eval_set, task="seg",
        device="cpu", progress=False, out_dir=str(tmp_path), **settings,
    )  # fmt: skip
    assert 0 <= result.final_acc <= 100 and result.epochs == 1
