"""``ddad::bn_stats_loss``: the fused BN-statistics term of one BatchNorm2d input.

``bn_stats_loss(x, running_mean, running_var)`` is a drop-in for the eager reference
``ddad_fast.losses.bn_stats_loss`` (same inputs, same scalar, same gradients), e.g.
``BNStatsHooks(teacher, layer_loss=bn_stats_loss)``.
Forward reads x once; backward reads it once and writes dx once (see ``kernels/bn_stats.py`` and
``csrc/bn_stats.cpp`` for the formulas).

The op, ``torch.ops.ddad.bn_stats_loss(x, running_mean, running_var) -> (loss, mean, var, dist)``,
returns the scalar loss and the fp32 statistics its backward reuses: per-channel mean and biased
var (C,) and dist = (||mean - rm||, ||var - rv||). Only ``loss`` is differentiable. Its backward is
a second op, ``ddad::bn_stats_loss_backward``. Each op is a ``triton_op`` (so ``torch.compile``
traces into its Triton kernels) whose implementation picks, by device:

- CUDA, triton installed: the Triton kernels of ``ddad_fast.kernels.bn_stats``;
- CPU, extension built: the C++/OpenMP kernels ``ddad::bn_stats_{forward,backward}_cpu`` of
  ``ddad_fast._C`` (registered for the CPU key too);
- anything else: a plain-PyTorch composite with the same outputs.

``bn_stats_loss`` itself calls the op only where a fused kernel exists (``fused_available``) and
the eager reference otherwise; a missing extension is said once by ``extension_available()``.
Without triton the ops are plain ``custom_op``s (CPU and fallback paths only).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import losses
from ..extension import extension_available

try:
    from ddad_fast.kernels import bn_stats as _triton_kernels
except ImportError:  # no triton: CPU kernels and the composite fallback only
    _triton_kernels = None

_define_op = torch.library.triton_op if _triton_kernels is not None else torch.library.custom_op

# Loads ddad_fast._C (registering ddad::bn_stats_*_cpu) or warns, once, that it is missing.
_CPU_KERNELS = extension_available()

Stats = tuple[Tensor, Tensor, Tensor, Tensor]


def fused_available(device: torch.device | str) -> bool:
    """Whether ``bn_stats_loss`` runs a fused kernel for tensors on ``device``."""
    kind = torch.device(device).type
    return (kind == "cuda" and _triton_kernels is not None) or (kind == "cpu" and _CPU_KERNELS)


def bn_stats_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """``||mean(x) - running_mean||_2 + ||var(x) - running_var||_2`` (fp32 scalar), fused.

    x: (N, C, H, W), fp32/bf16/fp16, any memory format; running_mean, running_var: (C,).
    Same value and gradients as ``ddad_fast.losses.bn_stats_loss``, which it falls back to on a
    device without a fused kernel.
    """
    if fused_available(x.device):
        return torch.ops.ddad.bn_stats_loss(x, running_mean, running_var)[0]
    return losses.bn_stats_loss(x, running_mean, running_var)


# ---- shared checks and the composite (any device) implementation ------------------------------


def _check(x: Tensor, running_mean: Tensor, running_var: Tensor) -> None:
    torch._check(
        x.dim() == 4,
        lambda: f"bn_stats_loss expects the (N, C, H, W) input of a BatchNorm2d, got {x.shape}",
    )
    torch._check(
        x.is_floating_point(), lambda: f"bn_stats_loss expects a floating-point x, got {x.dtype}"
    )
    for t in (running_mean, running_var):
        torch._check(
            t.dim() == 1 and t.shape[0] == x.shape[1],
            lambda t=t: (
                "bn_stats_loss expects running_mean and running_var of shape "
                f"(C,) = ({x.shape[1]},), got {tuple(t.shape)}"
            ),
        )
        torch._check(
            t.is_floating_point() and t.device == x.device,
            lambda t=t: (
                "bn_stats_loss expects floating-point running statistics on x's device "
                f"({x.device}), got {t.dtype} on {t.device}"
            ),
        )


def _stats_like(x: Tensor) -> Stats:
    """Empty (loss, mean, var, dist) for x: fp32 (), (C,), (C,), (2,) on x's device."""
    f32 = {"dtype": torch.float32, "device": x.device}
    c = x.shape[1]
    return (
        x.new_empty((), **f32),
        x.new_empty((c,), **f32),
        x.new_empty((c,), **f32),
        x.new_empty((2,), **f32),
    )


def _forward_composite(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Stats:
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)
    dist = torch.stack(
        [
            torch.linalg.vector_norm(mean - running_mean.float()),
            torch.linalg.vector_norm(var - running_var.float()),
        ]
    )
    return dist.sum(), mean, var, dist


def _channel_coefficients(
    grad: Tensor, mean: Tensor, var: Tensor, dist: Tensor, running_mean: Tensor, running_var: Tensor
) -> tuple[Tensor, Tensor]:
    """(g dL/dmean, g dL/dvar), (C,) fp32: g times the unit vectors of mean - rm and var - rv."""
    unit_m = torch.where(dist[0] > 0, (mean - running_mean.float()) / dist[0], 0.0)
    unit_v = torch.where(dist[1] > 0, (var - running_var.float()) / dist[1], 0.0)
    g = grad.float()
    return g * unit_m, g * unit_v


def _backward_composite(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    dist: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
) -> Tensor:
    dmean, dvar = _channel_coefficients(grad, mean, var, dist, running_mean, running_var)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    c = (1, -1, 1, 1)
    dx = torch.empty_like(x)
    dx.copy_(dmean.view(c) / m + dvar.view(c) * (2.0 / m) * (x.float() - mean.view(c)))
    return dx


# ---- the CPU kernels of ddad_fast._C --------------------------------------------------------

if _CPU_KERNELS:

    @torch.library.register_fake("ddad::bn_stats_forward_cpu")
    def _(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Stats:
        _check(x, running_mean, running_var)
        return _stats_like(x)

    @torch.library.register_fake("ddad::bn_stats_backward_cpu")
    def _(grad, x, mean, var, dist, running_mean, running_var) -> Tensor:
        return torch.empty_like(x)


def _forward_cpu(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Stats:
    if _CPU_KERNELS and x.device.type == "cpu":
        return torch.ops.ddad.bn_stats_forward_cpu(x, running_mean, running_var)
    return _forward_composite(x, running_mean, running_var)


def _backward_cpu(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    dist: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
) -> Tensor:
    if _CPU_KERNELS and x.device.type == "cpu":
        return torch.ops.ddad.bn_stats_backward_cpu(
            grad, x, mean, var, dist, running_mean, running_var
        )
    return _backward_composite(grad, x, mean, var, dist, running_mean, running_var)


# ---- the ops ----------------------------------------------------------------------------------


@_define_op("ddad::bn_stats_loss", mutates_args=())
def _bn_stats_loss_op(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Stats:
    # Every device goes through here (and torch.compile traces this body): CUDA to Triton.
    _check(x, running_mean, running_var)
    if x.device.type == "cuda" and _triton_kernels is not None:
        return _triton_kernels.bn_stats_forward(x, running_mean, running_var)
    return _forward_cpu(x, running_mean, running_var)


@_define_op("ddad::bn_stats_loss_backward", mutates_args=())
def _bn_stats_loss_backward_op(
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    var: Tensor,
    dist: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
) -> Tensor:
    _check(x, running_mean, running_var)
    if x.device.type == "cuda" and _triton_kernels is not None:
        return _triton_kernels.bn_stats_backward(
            grad, x, mean, var, dist, running_mean, running_var
        )
    return _backward_cpu(grad, x, mean, var, dist, running_mean, running_var)


_bn_stats_loss_op.register_kernel("cpu")(_forward_cpu)
_bn_stats_loss_backward_op.register_kernel("cpu")(_backward_cpu)


@_bn_stats_loss_op.register_fake
def _(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Stats:
    _check(x, running_mean, running_var)
    return _stats_like(x)


@_bn_stats_loss_backward_op.register_fake
def _(grad, x, mean, var, dist, running_mean, running_var) -> Tensor:
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output) -> None:
    x, running_mean, running_var = inputs
    _, mean, var, dist = output
    ctx.mark_non_differentiable(mean, var, dist)
    # The running statistics as the forward saw them: a BatchNorm in train mode updates them in
    # place without a version bump, and the backward must not see the update (the eager
    # reference keeps mean - rm, not rm). C floats each.
    ctx.save_for_backward(x, running_mean.clone(), running_var.clone(), mean, var, dist)


def _backward(ctx, grad, _grad_mean, _grad_var, _grad_dist):
    x, running_mean, running_var, mean, var, dist = ctx.saved_tensors
    dx = drm = drv = None
    if ctx.needs_input_grad[0]:
        dx = torch.ops.ddad.bn_stats_loss_backward(
            grad, x, mean, var, dist, running_mean, running_var
        )
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        dmean, dvar = _channel_coefficients(grad, mean, var, dist, running_mean, running_var)
        drm = -dmean.to(running_mean.dtype)
        drv = -dvar.to(running_var.dtype)
    return dx, drm, drv


_bn_stats_loss_op.register_autograd(_backward, setup_context=_setup_context)
