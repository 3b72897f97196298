"""Per-epoch learning-rate schedules shared by the student and the generator."""

from __future__ import annotations

import torch

from .errors import ConfigError

SCHEDULES = ("none", "step", "cosine")


def check_schedule(name: str, step_every: int = 0) -> None:
    """Refuse an unknown schedule name, or ``step_every`` where it cannot apply."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if step_every < 0:
        raise ConfigError(f"step_every must be non-negative, got {step_every}")
    if step_every and name != "step":
        raise ConfigError(f"step_every applies to the step schedule only, not {name!r}")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, epochs: int, step_every: int = 0
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per epoch, after it.

    none: constant; step: x0.1 after 20% and 40% of the epochs (DFAD's CIFAR milestones, epochs
    100 and 200 of 500), or, with ``step_every`` N > 0, x0.1 after every N epochs (DFAD's
    segmentation scripts: StepLR every 100 epochs); cosine: cosine annealing to zero over
    ``epochs``.
    """
    check_schedule(name, step_every)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    if name == "step":
        if step_every:
            return torch.optim.lr_scheduler.StepLR(optimizer, step_every, gamma=0.1)
        milestones = [max(1, round(epochs * 0.2)), max(2, round(epochs * 0.4))]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)  # cosine
