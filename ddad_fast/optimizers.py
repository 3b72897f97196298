"""The optimisers the teacher and the student train with: SGD with momentum, or Adam."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from .errors import ConfigError

if TYPE_CHECKING:
    from .distill_config import DistillConfig

OPTIMIZERS = ("sgd", "adam")


def check_optimizer(setting: str, name: str) -> None:
    """ConfigError naming ``setting`` (the config field) when ``name`` is not in OPTIMIZERS."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"{setting} must be sgd or adam, got {name!r}")


def make_optimizer(
    name: str,
    params: Iterable[nn.Parameter],
    lr: float,
    momentum: float,
    weight_decay: float,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """``sgd``: SGD with ``momentum``; ``adam``: Adam (``momentum`` unused); both at ``lr`` with
    ``weight_decay``. ``fused`` as torch's optimisers take it (None: their default)."""
    check_optimizer("optimizer", name)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused)


def make_student_optimizer(
    cfg: DistillConfig, params: Iterable[nn.Parameter], fused: bool | None
) -> torch.optim.Optimizer:
    """The student's optimiser: ``student_optimizer`` at ``lr_student`` with ``momentum`` (SGD)
    and ``weight_decay``; ``fused`` as torch's optimisers take it (None: their default)."""
    return make_optimizer(
        cfg.student_optimizer, params, cfg.lr_student, cfg.momentum, cfg.weight_decay, fused
    )


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict) -> None:
    """``opt.load_state_dict(state)`` for a state another backend may have saved.

    Kept from ``opt``, not taken from ``state``: its implementation (``fused``/``foreach``: torch's
    loader would restore the saver's) and each parameter's memory format for the state tensors
    shaped like it (momentum, Adam's moments; torch keeps the saver's, and a fused step on a
    channels_last buffer beside an NCHW parameter pairs the wrong elements).
    """
    implementation = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, own in zip(opt.param_groups, implementation, strict=True):
        group.update(own)
    for param, param_state in opt.state.items():
        for key, value in param_state.items():
            if torch.is_tensor(value) and value.shape == param.shape:
                param_state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
