"""The fast backend is a drop-in for the eager reference: same loop, no graph breaks, same results
within noise, interchangeable checkpoints."""

import dataclasses

import pytest
import torch

from ddad_fast.metrics import read_metrics
from ddad_fast.trainer import build_trainer


@pytest.fixture
def parity_config(tiny_distill):
    # 6 epochs x 10 iterations x (5 student + 1 generator) = 360 steps per run
    return dataclasses.replace(
        tiny_distill, epochs=6, epoch_iters=10, student_steps=5, batch_size=64, nz=32, ngf=16,
        lr_student=0.05,
    )  # fmt: skip


def test_loss_functions_compile_without_graph_breaks(tiny_distill):
    trainer = build_trainer(dataclasses.replace(tiny_distill, backend="fast"))
    for fn in (trainer.student_loss, trainer.generator_loss):
        explanation = torch._dynamo.explain(fn)(trainer.noise())
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


# The DFAD settings, and the seg demo's student settings (Adam, centred logits), each with the
# relative tolerance of the later iterations (the first must agree to 1e-4 in both).
STUDENT_SETTINGS = {
    "sgd": ({}, 1e-4),
    "adam-centred": (
        {"student_optimizer": "adam", "lr_student": 3e-3, "center_logits": True},
        5e-3,
    ),
}


@pytest.mark.parametrize("student", STUDENT_SETTINGS)
def test_fast_follows_eager_step_for_step(parity_config, tmp_path, student):
    # From the same seed, one epoch of 6 iterations x (5 student + 1 generator) steps: every
    # iteration's losses [student, L1, bn_loss, generator] agree. Compiled kernels and fused
    # optimisers round differently and the adversarial steps amplify it. Measured, relative: SGD
    # at most 7.5e-6; Adam, whose normalised steps turn tiny gradient differences into full-size
    # updates, 4.3e-6 after the first iteration growing to 1.6e-3 by the sixth (without centring
    # too: 1e-7 to 3.7e-4).
    settings, rtol = STUDENT_SETTINGS[student]
    losses = {}
    for backend in ("eager", "fast"):
        out = str(tmp_path / backend)
        cfg = dataclasses.replace(
            parity_config, backend=backend, epoch_iters=6, out_dir=out, **settings
        )
        trainer = build_trainer(cfg)
        trainer.train_epoch()
        losses[backend] = trainer.losses
    torch.testing.assert_close(losses["fast"][0], losses["eager"][0], rtol=1e-4, atol=0)
    torch.testing.assert_close(losses["fast"], losses["eager"], rtol=rtol, atol=0)


@pytest.mark.slow
def test_fast_matches_eager_within_noise(parity_config, tmp_path):
    accuracy, discrepancy = {}, {}
    for backend in ("eager", "fast"):
        runs = []
        for seed in (0, 1):
            out = tmp_path / f"{backend}{seed}"
            cfg = dataclasses.replace(parity_config, backend=backend, seed=seed, out_dir=str(out))
            runs.append((build_trainer(cfg).fit().final_acc, read_metrics(out / "metrics.csv")))
        accuracy[backend] = sum(acc for acc, _ in runs) / len(runs)
        discrepancy[backend] = sum(rows[-1]["loss_student"] for _, rows in runs) / len(runs)
    # Float rounding differs (compiled kernels, fused optimisers) and adversarial training amplifies
    # it, so runs agree in outcome, not bit for bit. Measured on this setting (3 seeds each, 8
    # epochs): eager 91.4-93.0%, fast 88.3-92.8%; at 4 epochs single seeds spread 75-88%. Hence
    # two-seed means, within 6 accuracy points and 25% of the final discrepancy.
    assert accuracy["fast"] == pytest.approx(accuracy["eager"], abs=6.0)
    assert discrepancy["fast"] == pytest.approx(discrepancy["eager"], rel=0.25)
    assert accuracy["eager"] > 70  # both really distilled something


def test_checkpoints_move_between_backends(parity_config, tmp_path):
    # the parity setting's shapes, so the compiled graphs come from inductor's cache
    cfg = dataclasses.replace(parity_config, epochs=3, epoch_iters=2, out_dir=str(tmp_path))
    build_trainer(dataclasses.replace(cfg, backend="eager")).fit(stop_after=1)
    result = build_trainer(dataclasses.replace(cfg, backend="fast", resume=True)).fit(stop_after=1)
    assert result.epochs == 2
    result = build_trainer(dataclasses.replace(cfg, backend="eager", resume=True)).fit()
    assert result.epochs == 3
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.csv")] == [1, 2, 3]
