"""Per-epoch learning-rate schedules shared by the student and the generator."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import ConfigError

SCHEDULES = ("none", "step", "cosine")
STEP_GAMMA = 0.1  # the step schedule's factor at each milestone unless told otherwise


def _epochs_text(epochs: Sequence[int]) -> str:
    return " ".join(map(str, epochs))


def check_milestones(milestones: Sequence[int], epochs: int | None = None) -> None:
    """Refuse milestones that are not positive, strictly increasing whole epochs, or (when
    ``epochs`` is given) not all below the run's last epoch."""
    if not milestones:
        raise ConfigError("milestones must list at least one epoch")
    if not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
        raise ConfigError(f"milestones must be whole epochs, got {milestones}")
    if min(milestones) < 1:
        raise ConfigError(f"milestones must be positive, got {_epochs_text(milestones)}")
    if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
        raise ConfigError(f"milestones must be increasing, got {_epochs_text(milestones)}")
    if epochs is not None and milestones[-1] >= epochs:
        raise ConfigError(
            f"milestones must be below epochs ({epochs}), got {_epochs_text(milestones)}"
        )


def check_schedule(
    name: str,
    step_every: int = 0,
    milestones: Sequence[int] | None = None,
    gamma: float = STEP_GAMMA,
    epochs: int | None = None,
) -> None:
    """Refuse an unknown schedule name, or a step setting (``step_every``, ``milestones``,
    ``gamma``) that is out of range or cannot apply."""
    if name not in SCHEDULES:
        raise ConfigError(f"unknown schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
    if step_every < 0:
        raise ConfigError(f"step_every must be non-negative, got {step_every}")
    if not 0 < gamma <= 1:
        raise ConfigError(f"step_gamma must be in (0, 1], got {gamma}")
    step_settings = {  # a sentence's subject for each, when given
        "step_every applies": bool(step_every),
        "milestones apply": milestones is not None,
        "step_gamma applies": gamma != STEP_GAMMA,
    }
    for subject, given in step_settings.items():
        if given and name != "step":
            raise ConfigError(f"{subject} to the step schedule only, not {name!r}")
    if milestones is not None:
        if step_every:
            raise ConfigError("give milestones or step_every, not both (--step-every 0: none)")
        check_milestones(milestones, epochs)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    epochs: int,
    step_every: int = 0,
    milestones: Sequence[int] | None = None,
    gamma: float = STEP_GAMMA,
) -> torch.optim.lr_scheduler.LRScheduler:
    """A scheduler stepped once per epoch, after it.

    none: constant; step: x``gamma`` (0.1) after each of ``milestones`` (epoch numbers), by
    default after 20% and 40% of the epochs (DFAD's CIFAR milestones, epochs 100 and 200 of 500),
    or, with ``step_every`` N > 0, after every N epochs (DFAD's segmentation scripts: StepLR every
    100 epochs); cosine: cosine annealing to zero over ``epochs``.
    """
    check_schedule(name, step_every, milestones, gamma, epochs)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    if name == "step":
        if step_every:
            return torch.optim.lr_scheduler.StepLR(optimizer, step_every, gamma=gamma)
        if milestones is None:
            milestones = [max(1, round(epochs * 0.2)), max(2, round(epochs * 0.4))]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)  # cosine
