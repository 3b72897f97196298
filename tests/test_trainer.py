"""The DDAD loop: it distills, its checkpoints resume exactly, and bad settings are refused."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import changed_settings, load_checkpoint
from ddad_fast.data import load_dataset
from ddad_fast.distill_config import RESUMABLE_CHANGES, DistillConfig, settings_before
from ddad_fast.errors import CheckpointError, ConfigError
from ddad_fast.metrics import read_metrics
from ddad_fast.model_io import load_model
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer


def test_short_run_lowers_the_discrepancy(tiny_distill):
    cfg = dataclasses.replace(tiny_distill, epochs=4, epoch_iters=5, lr_student=0.05)
    result = build_trainer(cfg).fit()
    rows = read_metrics(f"{cfg.out_dir}/metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["loss_student"] < 0.7 * rows[0]["loss_student"]
    assert result.teacher_acc > 50  # the 3-epoch teacher is far above chance
    assert rows[-1]["student_acc"] == pytest.approx(result.final_acc, abs=1e-3)
    assert all(math.isfinite(r["bn_loss"]) and r["bn_loss"] > 0 for r in rows)


def test_generator_step_updates_only_the_generator(tiny_distill):
    trainer = build_trainer(tiny_distill)
    student_before = [p.detach().clone() for p in trainer.student.parameters()]
    generator_before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.generator_step()
    assert all(p.grad is None for p in trainer.student.parameters())
    assert all(
        torch.equal(a, b) for a, b in zip(student_before, trainer.student.parameters(), strict=True)
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(generator_before, trainer.generator.parameters(), strict=True)
    )


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert torch.equal(value, b[key]), key


def test_resume_continues_exactly_where_it_stopped(tiny_distill, tmp_path):
    straight = dataclasses.replace(tiny_distill, out_dir=str(tmp_path / "straight"))
    build_trainer(straight).fit()
    split = dataclasses.replace(straight, out_dir=str(tmp_path / "split"))
    build_trainer(split).fit(stop_after=2)
    assert load_checkpoint(tmp_path / "split" / "last.pt")["epoch"] == 2
    resumed = build_trainer(dataclasses.replace(split, resume=True)).fit()
    assert resumed.epochs == 3
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    _assert_same_weights(a["model"]["state_dict"], b["model"]["state_dict"])
    _assert_same_weights(a["generator"], b["generator"])
    rows = read_metrics(tmp_path / "split" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    straight_rows = read_metrics(tmp_path / "straight" / "metrics.csv")
    assert [r["loss_student"] for r in rows] == [r["loss_student"] for r in straight_rows]


def test_resume_refuses_changed_settings(tiny_distill):
    build_trainer(tiny_distill).fit(stop_after=1)
    changed = dataclasses.replace(tiny_distill, resume=True, lr_student=0.5)
    with pytest.raises(CheckpointError, match="lr_student: 0.1 -> 0.5"):
        build_trainer(changed).fit()


def test_checkpoint_from_before_a_new_setting_resumes_at_its_default(tiny_distill):
    build_trainer(tiny_distill).fit(stop_after=1)
    path = f"{tiny_distill.out_dir}/last.pt"
    ckpt = load_checkpoint(path)
    del ckpt["config"]["center_logits"]  # as written before the setting existed
    torch.save(ckpt, path)
    assert build_trainer(dataclasses.replace(tiny_distill, resume=True)).fit().epochs == 3
    build_trainer(tiny_distill).fit(stop_after=1)
    ckpt = load_checkpoint(path)
    del ckpt["config"]["center_logits"]
    torch.save(ckpt, path)
    changed = dataclasses.replace(tiny_distill, resume=True, center_logits=True)
    with pytest.raises(CheckpointError, match="center_logits: False -> True"):
        build_trainer(changed).fit()


def test_checkpoint_with_the_generators_old_key_names_resumes(tiny_distill):
    build_trainer(tiny_distill).fit(stop_after=1)
    path = f"{tiny_distill.out_dir}/last.pt"
    ckpt = load_checkpoint(path)
    old_names = {"l1.0.": "l1.", "conv_blocks0.0.": "bn0.", "conv_blocks1.": "block1."}
    old_names |= {"conv_blocks2.3.": "to_image.0.", "conv_blocks2.5.": "to_image.2."}
    old_names |= {"conv_blocks2.": "block2."}  # after the longer conv_blocks2 prefixes

    def rename(key):
        new = next((n for n in old_names if key.startswith(n)), None)
        return key if new is None else old_names[new] + key[len(new) :]

    ckpt["generator"] = {rename(k): v for k, v in ckpt["generator"].items()}
    assert "bn0.weight" in ckpt["generator"] and "to_image.2.running_var" in ckpt["generator"]
    torch.save(ckpt, path)
    assert build_trainer(dataclasses.replace(tiny_distill, resume=True)).fit().epochs == 3


def test_seg_checkpoint_from_before_seg_generator_bn_had_the_bn():
    def differ(saved, **now):
        now = dataclasses.asdict(DistillConfig(**now))
        return changed_settings(saved, now, RESUMABLE_CHANGES, settings_before({"config": saved}))

    seg = dataclasses.asdict(DistillConfig(task="seg"))
    del seg["seg_generator_bn"]  # as written before the setting existed, with the BN
    assert differ(seg, task="seg") == {"seg_generator_bn": (True, False)}
    assert differ(seg, task="seg", seg_generator_bn=True) == {}
    cls = dataclasses.asdict(DistillConfig())
    del cls["seg_generator_bn"], cls["step_every"]  # step_every too: at its default, 0
    assert differ(cls) == {}
    assert differ(cls, step_every=100) == {"step_every": (0, 100)}


def test_seg_generator_bn_is_refused_for_classification():
    with pytest.raises(ConfigError, match="seg_generator_bn applies to --task seg only"):
        DistillConfig(seg_generator_bn=True).validate()


def test_adam_student_and_centered_logits_distill(tiny_distill):
    cfg = dataclasses.replace(
        tiny_distill, student_optimizer="adam", lr_student=3e-3, center_logits=True, epochs=4
    )
    trainer = build_trainer(cfg)
    assert isinstance(trainer.opt_student, torch.optim.Adam)
    z = trainer.noise()
    with torch.no_grad():
        t = trainer.teacher(trainer.generator(z))
        s = trainer.student(trainer.generator(z))
    # the centred discrepancy ignores a constant added to every class of a sample
    shifted = t + torch.randn(t.shape[0], 1)
    torch.testing.assert_close(trainer.discrepancy(shifted, s), trainer.discrepancy(t, s))
    result = trainer.fit()
    rows = read_metrics(f"{cfg.out_dir}/metrics.csv")
    # measured: the discrepancy fell to 0.74x, the student reached 35.9% (chance 10%)
    assert rows[-1]["loss_student"] < 0.8 * rows[0]["loss_student"]
    assert result.final_acc > 30


def test_resume_without_a_checkpoint_names_the_file(tiny_distill):
    with pytest.raises(CheckpointError, match="last.pt does not exist"):
        build_trainer(dataclasses.replace(tiny_distill, resume=True)).fit()


def test_best_and_last_checkpoints_load_as_models(tiny_distill):
    result = build_trainer(tiny_distill).fit()
    for name in ("best.pt", "last.pt"):
        model, record = load_model(f"{tiny_distill.out_dir}/{name}", num_classes=10)
        assert record["model"] == "tinycnn" and isinstance(model, nn.Module)
    assert load_checkpoint(f"{tiny_distill.out_dir}/best.pt")["test_acc"] == result.best_acc


def _trainer_with_teacher(cfg: DistillConfig, teacher: nn.Module) -> DDADTrainer:
    _, test_set, info = load_dataset("digits")
    student = build_model("tinycnn", 10, 1, 8)
    return DDADTrainer(cfg, teacher, student, Generator(cfg.nz, cfg.ngf, 1, 8), test_set, info)


def test_teacher_without_batchnorm_is_refused(tiny_distill):
    no_bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 10))
    with pytest.raises(ConfigError, match="no BatchNorm2d"):
        _trainer_with_teacher(tiny_distill, no_bn)
    # without the BN term (plain DFAD) such a teacher is fine
    _trainer_with_teacher(dataclasses.replace(tiny_distill, lambda_bn=0.0), no_bn).generator_step()


def test_teacher_student_class_mismatch_is_refused(tiny_distill):
    with pytest.raises(ConfigError, match="num_classes=10 but this run needs num_classes=100"):
        load_model(tiny_distill.teacher_ckpt, num_classes=100)


def test_missing_teacher_checkpoint_is_refused(tiny_distill):
    with pytest.raises(ConfigError, match="needs a trained teacher"):
        build_trainer(dataclasses.replace(tiny_distill, teacher_ckpt=None))


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("batch_size", 1, "batch_size must be at least 2"),
        ("epochs", 0, "epochs must be at least 1"),
        ("lambda_bn", -1.0, "lambda_bn must be non-negative"),
        ("schedule", "linear", "unknown schedule 'linear'"),
        ("step_every", -1, "step_every must be non-negative"),
        ("step_every", 100, "step_every applies to the step schedule only, not 'none'"),
        ("backend", "magic", "unknown backend 'magic'"),
        ("student_optimizer", "rmsprop", "student_optimizer must be sgd or adam, got 'rmsprop'"),
    ],
)
def test_bad_settings_are_refused(tiny_distill, setting, value, message):
    with pytest.raises(ConfigError, match=message):
        build_trainer(dataclasses.replace(tiny_distill, **{setting: value}))


def test_fit_leaves_the_teacher_as_it_came_and_can_be_called_again(tiny_distill):
    cfg = dataclasses.replace(tiny_distill, lambda_activation=0.1)
    trainer = build_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    assert trainer.fit(stop_after=1).epochs == 1
    assert not trainer.teacher.training
    for key, value in trainer.teacher.state_dict().items():  # weights and BN statistics
        assert torch.equal(value, before[key]), key
    assert not any(m._forward_hooks for m in trainer.teacher.modules())  # no hook left on it
    assert trainer.fit(stop_after=1).epochs == 2  # the hooks come back for the second call
    assert not any(m._forward_hooks for m in trainer.teacher.modules())
