"""A forward hook capturing a classifier's penultimate features: the input of its last Linear."""

from __future__ import annotations

from torch import Tensor, nn

from .errors import ConfigError


class PenultimateFeatures:
    """Captures the input (N, D) of the last ``nn.Linear`` a model registers (its classifier).

    The same start()/collect() protocol as ``BNStatsHooks``, so a compiled step can use it::

        feats = PenultimateFeatures(teacher)
        feats.start()
        logits = teacher(images)
        f = feats.collect()   # (N, D), with the autograd graph of the forward
    """

    def __init__(self, model: nn.Module):
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(
                f"{type(model).__name__} has no nn.Linear layer, so it has no penultimate "
                "features for DAFL's activation term; set lambda_activation to 0"
            )
        self._features: Tensor | None = None
        self._capturing = False
        self._handle = linears[-1].register_forward_hook(self._hook)

    def _hook(self, module: nn.Linear, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if self._capturing:
            self._features = inputs[0]

    def start(self) -> None:
        """Capture the classifier's input at the model's next forward."""
        self._features = None
        self._capturing = True

    def collect(self) -> Tensor:
        """The features captured since ``start()``; stops capturing."""
        self._capturing = False
        features, self._features = self._features, None
        if features is None:
            raise RuntimeError("collect() found no features: run the model after start()")
        return features

    def remove(self) -> None:
        """Detach the hook from the model."""
        self._handle.remove()
