"""``ddad distill`` with no data at all: the shape facts from the teacher's record (or flags for a
bare state_dict), losses alone in metrics.csv, ``student.pt`` for ``ddad eval`` later, resume."""

import csv
import dataclasses

import torch
from conftest import TINY_DISTILL, distill_argv

from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.cli import main

DATA_FREE = dataclasses.replace(TINY_DISTILL, dataset=None, epochs=2)


def test_distill_without_data_writes_a_student_to_evaluate_later_and_resumes(
    digits_teacher, tmp_path, capsys
):
    out = tmp_path / "run"
    cfg = dataclasses.replace(DATA_FREE, teacher_ckpt=str(digits_teacher), out_dir=str(out))
    assert main(distill_argv(cfg)) == 0
    assert "not evaluated (no --dataset)" in capsys.readouterr().out
    files = ["curves.png", "last.pt", "metrics.csv", "samples.png", "student.pt"]
    assert sorted(p.name for p in out.iterdir()) == files  # curves.png: the losses alone
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert "student_acc" not in rows[0] and "loss_student" in rows[0]
    record = load_checkpoint(out / "student.pt")
    assert (record["model"], record["num_classes"], record["in_channels"]) == ("tinycnn", 10, 1)
    assert record["epoch"] == 2

    assert main(["eval", "--ckpt", str(out / "student.pt"), "--dataset", "digits"]) == 0
    assert "eval: tinycnn from" in capsys.readouterr().out

    assert main(distill_argv(dataclasses.replace(cfg, epochs=3, resume=True))) == 0
    with (out / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]
    assert load_checkpoint(out / "student.pt")["epoch"] == 3


def test_a_bare_teacher_state_dict_needs_its_shape_flags(digits_teacher, tmp_path, capsys):
    bare = tmp_path / "bare.pt"
    torch.save(load_checkpoint(digits_teacher)["state_dict"], bare)
    cfg = dataclasses.replace(
        DATA_FREE, teacher_ckpt=str(bare), teacher="smallcnn", out_dir=str(tmp_path / "run")
    )
    assert main(distill_argv(cfg)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-classes, --in-channels and --image-size" in err
    shaped = dataclasses.replace(cfg, num_classes=10, in_channels=1, image_size=8)
    assert main(distill_argv(shaped)) == 0
    assert (tmp_path / "run" / "student.pt").exists()


def test_a_class_count_beside_a_dataset_must_be_the_datasets(digits_teacher, tmp_path, capsys):
    cfg = dataclasses.replace(
        TINY_DISTILL, teacher_ckpt=str(digits_teacher), out_dir=str(tmp_path), num_classes=7
    )
    assert main(distill_argv(cfg)) == 2
    assert "num_classes 7 differs from dataset digits's 10" in capsys.readouterr().err
