"""``ddad teacher/distill/eval/demo --task seg`` end to end on a tiny setting, the replay memory
holding the teacher's logit maps, and the one-line errors for inputs made for another task or in
the wrong layout."""

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest
import torch

from ddad_fast import demo_seg
from ddad_fast.builder import build_trainer
from ddad_fast.cli import main
from ddad_fast.data import composite
from ddad_fast.distill_config import DistillConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def few_canvases(monkeypatch):
    """The composite default with 24 train and 8 test canvases: seconds, not minutes."""
    monkeypatch.setattr(composite, "TRAIN_CANVASES", 24)
    monkeypatch.setattr(composite, "TEST_CANVASES", 8)


def load_bench(name: str):
    """The module bench/<name>.py (bench/ is not a package on the test path)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TINY_SEG_TEACHER = ["teacher", "--task", "seg", "--model", "deeplabv3_resnet_small",
                    "--dataset", "composite-digits", "--epochs", "1", "--batch-size", "8",
                    "--no-progress"]  # fmt: skip
TINY_SEG_DISTILL = ["distill", "--task", "seg", "--student", "deeplabv3_mobilenetv2_tiny",
                    "--dataset", "composite-digits", "--epochs", "1", "--epoch-iters", "2",
                    "--student-steps", "1", "--batch-size", "4", "--nz", "8", "--ngf", "2",
                    "--device", "cpu", "--no-progress"]  # fmt: skip


def test_seg_teacher_distill_eval_end_to_end(tmp_path, capsys, few_canvases):
    teacher_dir = tmp_path / "teacher"
    assert main([*TINY_SEG_TEACHER, "--out-dir", str(teacher_dir)]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"teacher deeplabv3_resnet_small on composite-digits: test mIoU \d+\.\d\d%", out
    )
    run_dir = tmp_path / "run"
    argv = [*TINY_SEG_DISTILL, "--teacher-ckpt", str(teacher_dir / "teacher.pt")]
    assert main([*argv, "--out-dir", str(run_dir)]) == 0
    assert re.search(r"distill: teacher mIoU \d+\.\d\d% student mIoU", capsys.readouterr().out)
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"student_miou", "best_miou", "teacher_miou", "l1_generator"} <= set(header)
    argv = ["eval", "--task", "seg", "--ckpt", str(run_dir / "best.pt"), "--dataset",
            "composite-digits"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"composite-digits test: mIoU \d+\.\d\d% pixel accuracy \d+\.\d\d%", out)
    assert re.search(r"per-class IoU .* 0:\d+\.\d 1:", out)
    # bench/study_diagnose.py reads classifiers: a seg run gets one line, not a stack trace
    with pytest.raises(SystemExit, match="is a segmentation run; it reads classifiers"):
        load_bench("study_diagnose").main([str(run_dir)])


@pytest.fixture(scope="module")
def cls_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls_teacher")
    argv = ["teacher", "--model", "tinycnn", "--dataset", "digits", "--epochs", "1",
            "--out-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    return out / "teacher.pt"


def test_a_classification_teacher_is_refused_for_seg(cls_teacher, capsys, tmp_path, few_canvases):
    argv = [*TINY_SEG_DISTILL, "--teacher-ckpt", str(cls_teacher), "--out-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        f"the model in {cls_teacher} is 'tinycnn', a classification model, but the task is seg"
        in err
    )
    argv = ["eval", "--task", "seg", "--ckpt", str(cls_teacher), "--dataset", "composite-digits"]
    assert main(argv) == 2
    assert "is 'tinycnn', a classification model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["teacher", "--task", "seg", "--model", "smallcnn", "--dataset", "composite-digits"],
         "the model is 'smallcnn', a classification model, but the task is seg"),
        (["teacher", "--task", "seg", "--model", "deeplabv3_resnet_small", "--dataset", "digits"],
         "dataset 'digits' is a classification dataset, but the task is seg"),
        (["teacher", "--model", "deeplabv3_resnet_small", "--dataset", "composite-digits"],
         "a segmentation model, but the task is cls"),
        (["teacher", "--task", "seg", "--model", "deeplabv3_resnet_small", "--dataset", "camvid",
          "--data-root", "/nonexistent"], "camvid: expected /nonexistent/{train,trainannot"),
        (["teacher", "--task", "detect", "--model", "smallcnn", "--dataset", "digits"],
         "unknown task 'detect'"),
        (["distill", "--task", "seg", "--student", "tinycnn", "--dataset", "composite-digits",
          "--teacher-ckpt", "x.pt"], "the student is 'tinycnn', a classification model"),
    ],
)  # fmt: skip
def test_bad_seg_input_gives_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("ddad: error: ") and message in err
    assert "Traceback" not in err


def test_seg_demo_on_a_tiny_setting_ends_with_its_line(tmp_path, monkeypatch, capsys, few_canvases):
    monkeypatch.setattr(
        demo_seg,
        "DEMO_SEG_TEACHER",
        dataclasses.replace(demo_seg.DEMO_SEG_TEACHER, epochs=1, batch_size=8),
    )
    monkeypatch.setattr(
        demo_seg,
        "DEMO_SEG_DISTILL",
        dataclasses.replace(
            demo_seg.DEMO_SEG_DISTILL, epochs=1, epoch_iters=1, student_steps=1, batch_size=8
        ),
    )
    out = tmp_path / "demo"
    assert main(["demo", "--task", "seg", "--out-dir", str(out), "--no-progress"]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"demo-seg: teacher mIoU \d+\.\d\d% student mIoU \d+\.\d\d% data-free, \d+s", last_line
    )
    for name in ("metrics.csv", "seg_samples.png", "curves.png", "best.pt", "last.pt"):
        assert (out / name).stat().st_size > 0, name


def test_student_ceiling_bench_runs_every_loss(tmp_path, capsys, few_canvases):
    # bench/seg_student_ceiling.py: the seg student on the real canvases, by each loss
    assert main([*TINY_SEG_TEACHER, "--out-dir", str(tmp_path)]) == 0
    ceiling = load_bench("seg_student_ceiling")
    teacher = str(tmp_path / "teacher.pt")
    for loss in ceiling.LOSSES:
        argv = ["--teacher", teacher, "--loss", loss, "--steps", "2", "--batch-size", "4"]
        assert ceiling.main(argv) == 0
        out = capsys.readouterr().out
        assert f"loss {loss}, adam lr 0.003" in out
        assert re.search(r"^\| 2 \| \d+\.\d\d \| \d+ \|$", out, re.MULTILINE)


def test_seg_distillation_replays_the_teachers_logit_maps(tmp_path, few_canvases):
    teacher_dir = tmp_path / "teacher"
    assert main([*TINY_SEG_TEACHER, "--out-dir", str(teacher_dir)]) == 0
    cfg = DistillConfig(
        task="seg", teacher_ckpt=str(teacher_dir / "teacher.pt"),
        student="deeplabv3_mobilenetv2_tiny", dataset="composite-digits", batch_size=4, nz=8,
        ngf=2, student_steps=2, replay=8, device="cpu", progress=False,
        out_dir=str(tmp_path / "run"),
    )  # fmt: skip
    trainer = build_trainer(cfg)
    trainer.run_iteration(0)  # a fresh student step fills a batch, the second replays it
    images, maps = trainer.memory.images, trainer.memory.outputs
    assert trainer.memory.count == 8  # the first student step's batch and the generator step's
    assert maps.ndim == 4 and maps.shape[:1] + maps.shape[2:] == images.shape[:1] + images.shape[2:]
    torch.testing.assert_close(trainer.teacher(images), maps, rtol=1e-5, atol=1e-5)
    z = trainer.noise()
    torch.manual_seed(1)  # the same dropout masks in the student's head for both
    fresh, new_images, new_maps = trainer.student_loss(z)
    torch.manual_seed(1)
    assert torch.equal(fresh, trainer.replayed_student_loss(new_images, new_maps))
