"""Per-epoch learning-rate schedules shared by the student and the generator."""

from __future__ import annotations

import torch

from .errors import ConfigError

SCHEDULES = ("none", "step", "cosine")


def make_scheduler(
    optimizer: torch.optim.Optimizer, name: str, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per epoch.

    none: constant; step: x0.1 at 20% and 40% of the epochs (DFAD's milestones 100 and 200 of
    500); cosine: cosine annealing to zero over ``epochs``.
    """
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    if name == "step":
        milestones = [max(1, round(epochs * 0.2)), max(2, round(epochs * 0.4))]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
