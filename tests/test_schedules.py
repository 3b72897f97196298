"""The per-epoch learning-rate schedules against DFAD's published schedules."""

import dataclasses

import pytest
import torch

from ddad_fast.builder import build_trainer
from ddad_fast.distill_config import DistillConfig
from ddad_fast.errors import ConfigError
from ddad_fast.schedules import STEP_GAMMA, make_scheduler


def _lrs(
    name: str,
    epochs: int,
    step_every: int = 0,
    milestones: tuple[int, ...] | None = None,
    gamma: float = STEP_GAMMA,
) -> list[float]:
    """The learning rate each epoch 1..epochs runs at, the scheduler stepped after each epoch."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(opt, name, epochs, step_every, milestones, gamma)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def _runs(lrs: list[float]) -> list[tuple[float, int]]:
    """(rate, epochs at it) for each run of equal rates."""
    runs: list[tuple[float, int]] = []
    for lr in lrs:
        if runs and runs[-1][0] == pytest.approx(lr):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((lr, 1))
    return [(pytest.approx(lr), n) for lr, n in runs]


def test_step_is_dfads_cifar_schedule():
    # DFAD_cifar.py --scheduler: MultiStepLR([100, 200], 0.1) over 500 epochs
    assert _runs(_lrs("step", 500)) == [(1.0, 100), (0.1, 100), (0.01, 300)]
    assert DistillConfig().schedule == "step" and DistillConfig().epochs == 500


def test_step_every_is_dfads_segmentation_schedule():
    # DFAD_camvid_deeplab.py --scheduler: StepLR(step_size=100, gamma=0.1) over 300 epochs
    assert _runs(_lrs("step", 300, step_every=100)) == [(1.0, 100), (0.1, 100), (0.01, 100)]
    assert _runs(_lrs("step", 7, step_every=3)) == [(1.0, 3), (0.1, 3), (0.01, 1)]


def test_milestones_decay_after_each_listed_epoch():
    assert _lrs("step", 6, milestones=(1, 4)) == pytest.approx([1.0, 0.1, 0.1, 0.1, 0.01, 0.01])
    assert _lrs("step", 4, milestones=(2,)) == pytest.approx([1.0, 1.0, 0.1, 0.1])
    # DFAD_cifar.py's milestones written out are its default schedule
    assert _lrs("step", 500, milestones=(100, 200)) == _lrs("step", 500)


def test_step_gamma_is_the_factor_of_each_decay():
    # DFAD_nyu_deeplab.py --scheduler: StepLR(step_size=100, gamma=0.3) over 300 epochs
    assert _runs(_lrs("step", 300, step_every=100, gamma=0.3)) == [
        (1.0, 100),
        (0.3, 100),
        (0.09, 100),
    ]
    assert _lrs("step", 3, milestones=(1, 2), gamma=0.5) == pytest.approx([1.0, 0.5, 0.25])


def test_the_trainer_decays_at_its_configured_milestones(tiny_distill):
    cfg = dataclasses.replace(tiny_distill, schedule="step", milestones=[2], step_gamma=0.5)
    trainer = build_trainer(cfg)  # 3 epochs: by default it would decay after epochs 1 and 2
    for sched in (trainer.sched_student, trainer.sched_generator):
        assert sorted(sched.milestones) == [2] and sched.gamma == 0.5


def test_none_and_cosine():
    assert _lrs("none", 4) == [1.0] * 4
    lrs = _lrs("cosine", 4)
    assert lrs[0] == 1.0 and lrs == sorted(lrs, reverse=True) and lrs[-1] > 0


@pytest.mark.parametrize(
    ("name", "step_every", "milestones", "gamma", "message"),
    [
        ("step", -1, None, 0.1, "step_every must be non-negative"),
        ("cosine", 10, None, 0.1, "step_every applies to the step schedule only, not 'cosine'"),
        ("linear", 0, None, 0.1, "unknown schedule 'linear'"),
        ("step", 0, (), 0.1, "milestones must list at least one epoch"),
        ("step", 0, (0, 2), 0.1, "milestones must be positive, got 0 2"),
        ("step", 0, (3, 2), 0.1, "milestones must be increasing, got 3 2"),
        ("step", 0, (2, 2), 0.1, "milestones must be increasing, got 2 2"),
        ("step", 0, (2, 5), 0.1, r"milestones must be below epochs \(5\), got 2 5"),
        ("step", 0, (1.5,), 0.1, r"milestones must be whole epochs, got \(1.5,\)"),
        ("step", 2, (3,), 0.1, "give milestones or step_every, not both"),
        ("none", 0, (3,), 0.1, "milestones apply to the step schedule only, not 'none'"),
        ("step", 0, None, 0.0, r"step_gamma must be in \(0, 1\], got 0.0"),
        ("step", 0, None, 1.5, r"step_gamma must be in \(0, 1\], got 1.5"),
        ("cosine", 0, None, 0.3, "step_gamma applies to the step schedule only, not 'cosine'"),
    ],
)
def test_bad_schedules_are_refused(name, step_every, milestones, gamma, message):
    with pytest.raises(ConfigError, match=message):
        _lrs(name, 5, step_every, milestones, gamma)
