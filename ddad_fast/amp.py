"""Mixed precision: a model's output layer in fp32 under bf16 autocast.

Under bf16 autocast each layer's output is rounded to 8 significant bits: logits near 5 to steps
of 1/32. DDAD's student learns from sign(t - s) alone (the L1's derivative), and late in training
many |t - s| are a few hundredths, so bf16 logits make that sign wrong, or zero where t and s round
to the same value (no gradient at all). Running the output layer in fp32 (its input cast to fp32,
fp32 weights and accumulation, autocast off inside it) removes that last rounding and the zeros;
the layers before it stay in bf16, and their rounding, which reaches the logits too, remains
(``tests/test_amp.py`` measures both). The layer's parameters, state_dict keys and hooks are
unchanged.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from .errors import ConfigError


def output_layer(model: nn.Module, dense: bool) -> nn.Conv2d | nn.Linear:
    """The layer that computes ``model``'s logits: the last ``nn.Linear`` registered (in
    ``model.modules()`` order) of a classifier, the last ``nn.Conv2d`` of a segmentation model
    (``dense``: DeepLab's 1x1 classifier, whose maps are then upsampled).

    A model of your own that registers another layer of that kind after its output layer gets
    that one in fp32 instead: still correct, without the precision gain. Raises ConfigError when
    the model has no layer of that kind.
    """
    kind = nn.Conv2d if dense else nn.Linear
    layers = [m for m in model.modules() if isinstance(m, kind)]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no {kind.__name__} layer to run in fp32 as its output "
            "layer under bf16 autocast; use a backend without autocast (--backend eager)"
        )
    return layers[-1]


def _fp32_forward(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer``'s own forward on ``x`` ((N, D) for a Linear, (N, C, h, w) for a Conv2d) in
    fp32 with autocast off: fp32 output."""
    with torch.autocast(x.device.type, enabled=False):
        return type(layer).forward(layer, x.float())


def fp32_output_layer(model: nn.Module, dense: bool) -> nn.Module:
    """Make ``model``'s output layer (``output_layer``) run in fp32 under autocast; returns it.

    The layer's input (bf16 under autocast) is cast to fp32 and the layer runs with autocast off,
    so the logits (N, K) or logit maps (N, K, h, w) come out in fp32; the ops after it on fp32
    inputs (DeepLab's bilinear upsampling) then run in fp32 too. Everything before the layer runs
    as autocast decides. Outside autocast the model computes what it did before. Only the
    layer's ``forward`` attribute changes (a ``functools.partial``, which ``torch.compile``
    traces without graph breaks and ``copy.deepcopy`` rebinds to the copy); applying it twice
    changes nothing more.
    """
    layer = output_layer(model, dense)
    layer.forward = functools.partial(_fp32_forward, layer)
    return layer
