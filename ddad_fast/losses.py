"""Eager (plain PyTorch, fp32) reference losses of DDAD.

These are the oracle every fused kernel is tested against and the baseline every benchmark is
measured against. They are written for clarity, not speed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def bn_stats_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """DeepInversion's BN-statistics matching term for one BatchNorm2d input.

    x: (N, C, H, W) the input the BatchNorm layer sees; running_mean, running_var: (C,).
    Returns the scalar ``||mean(x) - running_mean||_2 + ||var(x) - running_var||_2`` where mean and
    the biased variance are taken per channel over (N, H, W), computed in fp32.
    """
    x = x.float()
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=False)
    return torch.linalg.vector_norm(mean - running_mean.float()) + torch.linalg.vector_norm(
        var - running_var.float()
    )


def l1_discrepancy(t: Tensor, s: Tensor) -> Tensor:
    """Mean absolute error between teacher and student outputs.

    t, s: logits (N, C) or logit maps (N, C, H, W) of the same shape. Returns a scalar (fp32).
    """
    return F.l1_loss(s.float(), t.float())


def center_over_classes(logits: Tensor) -> Tensor:
    """Logits (N, C) or logit maps (N, C, H, W) minus each sample's (each pixel's) mean over the
    C classes: the part softmax sees, since softmax ignores a constant added to every class."""
    return logits - logits.mean(dim=1, keepdim=True)


def logit_discrepancy(
    t: Tensor,
    s: Tensor,
    center: bool,
    l1: Callable[[Tensor, Tensor], Tensor] = l1_discrepancy,
) -> Tensor:
    """DDAD's discrepancy: ``l1(t, s)`` (a backend's L1) over logits (N, C) or logit maps
    (N, C, H, W), of both less their mean over the classes when ``center``. Returns a scalar."""
    if center:
        t, s = center_over_classes(t), center_over_classes(s)
    return l1(t, s)


def onehot_loss(t_logits: Tensor) -> Tensor:
    """DAFL's one-hot term: cross-entropy of the teacher's logits (N, C) with its own argmax."""
    return F.cross_entropy(t_logits.float(), t_logits.argmax(dim=1))


def negative_entropy_loss(
    t_logits: Tensor, over_ranks: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """DAFL's information-entropy term, as a loss to minimise.

    t_logits: logits (N, C) or logit maps (N, C, H, W). Returns ``sum_c p_c log p_c`` of the
    softmax p averaged over the batch (and the pixels): minimising it spreads the generated batch
    evenly over the classes. ``over_ranks`` (under torchrun, ``distributed.global_mean``) averages
    p (C,) over the ranks first, so that the term is that of the global batch.
    """
    p = F.softmax(t_logits.float(), dim=1).transpose(0, 1).reshape(t_logits.shape[1], -1)
    p = p.mean(dim=1)
    if over_ranks is not None:
        p = over_ranks(p)
    return (p * torch.log(p.clamp_min(1e-8))).sum()


def activation_loss(features: Tensor) -> Tensor:
    """DAFL's activation term, as a loss to minimise: ``-mean |f|`` of penultimate features.

    features: (N, D). Returns a scalar (fp32): the paper's ``-1/N sum_i ||f_i||_1`` divided by D,
    as DAFL's code computes it (its weight 0.1 was set for this scaling).
    """
    return -features.float().abs().mean()
