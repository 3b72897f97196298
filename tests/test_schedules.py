"""The per-epoch learning-rate schedules against DFAD's published schedules."""

import pytest
import torch

from ddad_fast.distill_config import DistillConfig
from ddad_fast.errors import ConfigError
from ddad_fast.schedules import make_scheduler


def _lrs(name: str, epochs: int, step_every: int = 0) -> list[float]:
    """The learning rate each epoch 1..epochs runs at, the scheduler stepped after each epoch."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = make_scheduler(opt, name, epochs, step_every)
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


def test_none_and_cosine():
    assert _lrs("none", 4) == [1.0] * 4
    lrs = _lrs("cosine", 4)
    assert lrs[0] == 1.0 and lrs == sorted(lrs, reverse=True) and lrs[-1] > 0


@pytest.mark.parametrize(
    ("name", "step_every", "message"),
    [
        ("step", -1, "step_every must be non-negative"),
        ("cosine", 10, "step_every applies to the step schedule only, not 'cosine'"),
        ("linear", 0, "unknown schedule 'linear'"),
    ],
)
def test_bad_schedules_are_refused(name, step_every, message):
    with pytest.raises(ConfigError, match=message):
        _lrs(name, 5, step_every)
