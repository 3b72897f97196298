"""The fast backend is a drop-in for the eager reference: same loop, no graph breaks, same results
within noise, interchangeable checkpoints."""

import dataclasses

import pytest
import torch

from ddad_fast.builder import build_trainer
from ddad_fast.metrics import read_metrics


@pytest.fixture
def parity_config(tiny_distill):
    # 6 epochs x 10 iterations x (5 student + 1 generator) = 360 steps per run
    return dataclasses.replace(
        tiny_distill, epochs=6, epoch_iters=10, student_steps=5, batch_size=64, nz=32, ngf=16,
        lr_student=0.05,
    )  # fmt: skip


def test_loss_functions_compile_without_graph_breaks(tiny_distill):
    trainer = build_trainer(dataclasses.replace(tiny_distill, backend="fast"))
    _, images, t_logits = trainer.student_loss(trainer.noise())
    calls = [
        (trainer.student_loss, (trainer.noise(),)),
        (trainer.generator_loss, (trainer.noise(),)),
        (trainer.replayed_student_loss, (images, t_logits)),  # --replay's student step
    ]
    for fn, args in calls:
        explanation = torch._dynamo.explain(fn)(*args)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


# The DFAD settings, and the seg demo's student settings (Adam, centred logits), each with the
# relative tolerance of the first iteration and that of the five after it.
STUDENT_SETTINGS = {
    "sgd": ({}, 1e-5, 1e-2),
    "adam-centred": (
        {"student_optimizer": "adam", "lr_student": 3e-3, "center_logits": True},
        1e-4,
        2e-2,
    ),
}


@pytest.mark.parametrize("student", STUDENT_SETTINGS)
def test_fast_follows_eager_step_for_step(parity_config, tmp_path, student):
    # From the same seed, one epoch of 6 iterations x (5 student + 1 generator) steps; each
    # iteration's losses are [student (sum of 5 steps), L1, bn_loss, generator]. Compiled kernels
    # and fused optimisers round differently, and Adam turns that into full-size differences: its
    # first steps are lr * sign(g), so a weight whose gradient is rounding noise (a few in the
    # generator's convolutions, measured) moves by 2 * lr in one backend and not in the other. From
    # the second iteration on the runs drift apart by an amount set by the seed and the CPU's
    # kernels more than by the iteration, as far as a 1% error in either learning rate takes them.
    #
    # Greatest relative differences measured, seeds 0-5 on AVX2 kernels (ATEN_CPU_CAPABILITY=avx2),
    # on scalar ones (=default), and on scalar eager kernels beside AVX2 compiled code; seeds 0-2
    # on oneDNN's AVX and SSE4.1 convolutions (ONEDNN_MAX_CPU_ISA): first iteration, SGD 1.6e-6,
    # Adam 2.5e-5; iterations 2-6, SGD 3.0e-3, Adam 6.0e-3. Hence a tight check of the first
    # iteration (its forward passes, both losses and five student steps) and a bound for the rest,
    # each 3-6x the worst measured. What they catch, measured on seed 0: in the first iteration a
    # 1% error in the student's learning rate (5e-4) or momentum (6e-4), a dropped weight decay
    # (SGD 3e-5, Adam 2e-4), a 0.1% error in L1 (1e-3) or 1% in bn_loss (1e-2); later, a
    # generator that does not learn (1.2) or a BN-statistics gradient without its mean term
    # (1.8e-1). Smaller errors in the generator's step drown in the drift (1% in its learning
    # rate: 2e-3 to 8e-3); the ops' own tests compare those gradients directly.
    settings, rtol_first, rtol_later = STUDENT_SETTINGS[student]
    losses = {}
    for backend in ("eager", "fast"):
        out = str(tmp_path / backend)
        cfg = dataclasses.replace(
            parity_config, backend=backend, epoch_iters=6, out_dir=out, **settings
        )
        trainer = build_trainer(cfg)
        trainer.train_epoch()
        losses[backend] = trainer.losses
    torch.testing.assert_close(losses["fast"][0], losses["eager"][0], rtol=rtol_first, atol=0)
    torch.testing.assert_close(losses["fast"][1:], losses["eager"][1:], rtol=rtol_later, atol=0)


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
