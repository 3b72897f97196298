"""Forward hooks that turn a teacher's BatchNorm layers into the generator's BN-statistics term."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .losses import bn_stats_loss

BNLayerLoss = Callable[[Tensor, Tensor, Tensor], Tensor]


def batchnorm_layers(model: nn.Module) -> list[nn.BatchNorm2d]:
    """Every BatchNorm2d of ``model`` that tracks running statistics, in registration order."""
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]


class BNStatsHooks:
    """Adds up ``layer_loss(input, running_mean, running_var)`` over a model's BatchNorm2d layers.

    Hooks are registered on construction and removed by ``remove()`` (or on leaving a ``with``
    block). They only compute between ``start()`` and ``collect()``, so teacher forwards elsewhere
    (the student steps) cost nothing extra. Plain method calls rather than a context manager, so
    ``torch.compile(fullgraph=True)`` traces a step that uses them::

        with BNStatsHooks(teacher) as hooks:
            hooks.start()
            logits = teacher(images)
            loss = hooks.collect()   # scalar, sum over layers; stops capturing
    """

    def __init__(self, model: nn.Module, layer_loss: BNLayerLoss = bn_stats_loss):
        layers = batchnorm_layers(model)
        if not layers:
            raise ConfigError(
                f"the teacher ({type(model).__name__}) has no BatchNorm2d layer with running "
                "statistics, so DDAD's BN-statistics term cannot exist; use a teacher with "
                "BatchNorm, or set lambda_bn to 0 for plain adversarial distillation"
            )
        self.layer_loss = layer_loss
        self._terms: list[Tensor] = []
        self._capturing = False
        self._handles = [layer.register_forward_hook(self._hook) for layer in layers]

    def _hook(self, module: nn.BatchNorm2d, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self._capturing:
            self._terms.append(self.layer_loss(inputs[0], module.running_mean, module.running_var))

    def start(self) -> None:
        """From now on every BN layer the model runs adds its term."""
        self._terms.clear()
        self._capturing = True

    def collect(self) -> Tensor:
        """The sum of the terms captured since ``start()`` (a scalar); stops capturing."""
        self._capturing = False
        if not self._terms:
            raise RuntimeError("collect() found no BN terms: run the teacher after start()")
        total = torch.stack(self._terms).sum()
        self._terms.clear()
        return total

    @property
    def num_layers(self) -> int:
        return len(self._handles)

    def remove(self) -> None:
        """Detach every hook from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> BNStatsHooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
