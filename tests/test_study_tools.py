"""The study's probe tools. bench/study_probe.py: a tiny probe runs every seed with the --set
values applied, and a bad --set stops it early with a message naming the problem.
bench/study_diagnose.py: per-class rows for a finished run, a clear error for a folder without
one. bench/replay_augment_probe.py: its flip-and-crop, and replayed steps on augmented images."""

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import file_hashes

from bench import study_probe
from bench.replay_augment_probe import PAD, augmented_replayed_batch, flip_and_crop
from bench.study import TINY_PLANS
from ddad_fast.builder import build_trainer
from ddad_fast.trainer import DDADTrainer

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_probe(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    """A tiny digits probe with its teacher under tmp_path/study, its runs under tmp_path/probe."""
    return run_bench(
        "study_probe.py",
        *["--tiny", "--dataset", "digits", "--study-dir", str(tmp_path / "study")],
        *["--out-dir", str(tmp_path / "probe"), *argv],
    )


def test_probe_runs_each_seed_with_the_settings_applied(tmp_path):
    done = run_probe(
        tmp_path, "--seeds", "0", "1", "--set", "lambda_bn=0.5", "--set", "center_logits=true"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "probe" / "probe.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "1"]
    for seed in (0, 1):
        saved = torch.load(
            tmp_path / "probe" / "digits" / "probe" / f"seed{seed}" / "last.pt",
            weights_only=False,
        )["config"]
        assert (saved["lambda_bn"], saved["center_logits"], saved["seed"]) == (0.5, True, seed)
        assert saved["teacher_ckpt"].startswith(str(tmp_path / "study"))
    assert "probe ddad {'lambda_bn': 0.5, 'center_logits': True}: " in done.stdout
    # a second probe into the same folder stops before any run and leaves these runs as they are
    before = file_hashes(tmp_path / "probe")
    argv = ["--tiny", "--dataset", "digits", "--study-dir", str(tmp_path / "study")]
    with pytest.raises(SystemExit, match=r"seed1 already holds a run .*give --overwrite"):
        study_probe.main([*argv, "--out-dir", str(tmp_path / "probe"), "--seeds", "2", "1"])
    assert file_hashes(tmp_path / "probe") == before


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("bogus=1", "with a DistillConfig field, got 'bogus=1'"),
        ("center_logits=maybe", "center_logits wants true or false, got 'maybe'"),
        ("lambda_bn=lots", "lambda_bn wants a float, got 'lots'"),
        ("teacher_ckpt=x.pt", "cannot set teacher_ckpt"),
    ],
)
def test_a_bad_setting_stops_the_probe_with_its_name(tmp_path, setting, message):
    # In process (a SystemExit with a message prints that line alone, no traceback); one run as
    # a real process is in test_probe_runs_each_seed_with_the_settings_applied.
    argv = ["--tiny", "--dataset", "digits", "--study-dir", str(tmp_path / "study")]
    with pytest.raises(SystemExit) as stop:
        study_probe.main([*argv, "--out-dir", str(tmp_path / "probe"), "--set", setting])
    assert str(stop.value).startswith("study_probe: ") and message in str(stop.value)
    assert not (tmp_path / "study").exists()  # stopped before training the teacher


def test_a_probe_resumed_every_epoch_without_replay_ends_where_a_straight_one_does(tmp_path):
    # Without replay, last.pt holds everything: resuming after every epoch changes nothing.
    straight = run_probe(tmp_path, "--seeds", "0")
    resumed = run_bench(
        "study_probe.py",
        *["--tiny", "--dataset", "digits", "--study-dir", str(tmp_path / "study"), "--seeds", "0"],
        *["--out-dir", str(tmp_path / "resumed"), "--resume-every-epoch"],
    )
    assert straight.returncode == 0 and resumed.returncode == 0, resumed.stderr[-2000:]
    rows = [
        (tmp_path / out / "digits" / "probe" / "seed0" / "metrics.csv").read_text().splitlines()
        for out in ("probe", "resumed")
    ]
    assert len(rows[1]) == 1 + TINY_PLANS[0].epochs

    def accuracies(lines: list[str]) -> list[str]:
        column = lines[0].split(",").index("student_acc")
        return [line.split(",")[column] for line in lines[1:]]

    assert accuracies(rows[1]) == accuracies(rows[0])


def test_diagnose_prints_per_class_rows_of_a_finished_run(tmp_path):
    assert run_probe(tmp_path, "--seeds", "0").returncode == 0
    run = tmp_path / "probe" / "digits" / "probe" / "seed0"
    done = run_bench("study_diagnose.py", str(run))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("| run | class 0 | ") and "class 9 |" in lines[0]
    shares = lines[2].split("|")[2:12]
    assert lines[2].startswith(f"| {run} generated, % per teacher class | ")
    assert abs(sum(float(v) for v in shares) - 100) <= 5  # rounded to whole percents
    assert lines[3].startswith(f"| {run} student test acc % per class | ")
    assert lines[4].startswith("| teacher test acc % per class | ")


def test_diagnose_names_a_folder_without_a_run(tmp_path):
    done = run_bench("study_diagnose.py", str(tmp_path))
    assert done.returncode != 0
    assert f"no last.pt in {tmp_path}" in done.stderr and "Traceback" not in done.stderr


def test_flip_and_crop_gives_each_image_a_crop_of_its_reflect_padding_flipped_or_not():
    images = torch.randn(64, 2, 5, 6)
    out = flip_and_crop(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    size = 2 * PAD + 1
    flips_seen = set()
    for image, crop in zip(images, out, strict=True):
        found = [
            flip
            for flip in (False, True)
            for dy in range(size)
            for dx in range(size)
            if torch.equal(
                torch.nn.functional.pad(
                    (image.flip(2) if flip else image)[None], (PAD,) * 4, mode="reflect"
                )[0, :, dy : dy + 5, dx : dx + 6],
                crop,
            )
        ]
        assert found, "an output that is no crop of its image's padding"
        flips_seen.update(found)
    assert flips_seen == {False, True}


def test_the_augmented_replayed_step_trains_on_augmented_images_the_teacher_scores(
    tiny_distill, monkeypatch
):
    monkeypatch.setattr(DDADTrainer, "replayed_batch", augmented_replayed_batch)
    trainer = build_trainer(dataclasses.replace(tiny_distill, replay=64))
    trainer.student_step()  # fills the memory with a batch
    rng = torch.Generator().set_state(trainer.noise_rng.get_state())
    images, _ = trainer.memory.sample(trainer.batch, rng)
    augmented = flip_and_crop(images, rng)
    with torch.no_grad():
        expected = trainer.replayed_student_loss(augmented, trainer.teacher(augmented))
    loss = trainer.student_step(replay=True)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    assert trainer.memory.count == trainer.batch  # a replayed step adds nothing
