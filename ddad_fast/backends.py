"""The single place the trainer takes its ops from: a backend names an implementation of each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from . import losses
from .errors import ConfigError


@dataclass(frozen=True)
class DistillOps:
    """The loss ops of one backend.

    l1_discrepancy(t, s) -> scalar: mean |t - s| over logits (N, C) or maps (N, C, H, W).
    bn_stats_loss(x, running_mean, running_var) -> scalar: one BN layer's statistics term.
    """

    name: str
    l1_discrepancy: Callable[[Tensor, Tensor], Tensor]
    bn_stats_loss: Callable[[Tensor, Tensor, Tensor], Tensor]


EAGER = DistillOps("eager", losses.l1_discrepancy, losses.bn_stats_loss)

_BACKENDS: dict[str, DistillOps] = {"eager": EAGER}


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> DistillOps:
    """The ops of backend ``name``; an unknown name is a ConfigError listing the known ones."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; known backends: {', '.join(backend_names())}"
        ) from None
