"""Fused L1 discrepancy: ``torch.ops.ddad.l1_discrepancy`` (csrc/l1_discrepancy.cpp on CPU,
csrc/cuda/ on CUDA), a drop-in for :func:`ddad_fast.losses.l1_discrepancy`.

The op reads t and s once each and returns ``mean(|t - s|)`` as a 0-dim fp32 tensor, accumulated in
fp32 with a fixed (bitwise deterministic) reduction. Its backward op writes both gradients,
``sign(t - s) * g / numel`` and the negation, in one pass, each in its input's dtype and memory
format, and skips a gradient autograd does not need.

Memory formats are handled by strides: when t and s are dense in the same layout (contiguous,
channels_last, ...) the kernels read them as they are. When the layouts differ (or an input is not
dense, e.g. a slice) the op copies s into t's layout (or a non-dense t into a dense one) once inside
the forward and again inside the backward; the gradients still come back in each input's own format.

This module registers the fake (meta) implementations and the autograd formula when the extension
is built; otherwise :func:`l1_discrepancy` falls back to the eager reference, after the one warning
of :func:`ddad_fast.extension.extension_available`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import losses
from ..extension import extension_available

AVAILABLE = extension_available()

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(t: Tensor, s: Tensor, op: str) -> None:
    """The C++ checks again, for fake tensors (torch.compile) to fail as the real op would."""
    torch._check(
        t.shape == s.shape,
        lambda: f"{op}: t and s must have the same shape, got {list(t.shape)} and {list(s.shape)}",
    )
    torch._check(
        t.device == s.device,
        lambda: f"{op}: t and s must be on the same device, got {t.device} and {s.device}",
    )
    torch._check(
        t.dtype == s.dtype,
        lambda: f"{op}: t and s must have the same dtype, got {t.dtype} and {s.dtype}",
    )
    torch._check(
        t.dtype in _DTYPES,
        lambda: f"{op}: t and s must be float32, bfloat16 or float16, got {t.dtype}",
    )


def fused_takes(t: Tensor, s: Tensor) -> bool:
    """Whether :func:`l1_discrepancy` takes t and s: the same shape and device, each float32,
    bfloat16 or float16 (two of them are promoted to the wider one)."""
    return t.shape == s.shape and t.device == s.device and t.dtype in _DTYPES and s.dtype in _DTYPES


if AVAILABLE:

    @torch.library.register_fake("ddad::l1_discrepancy")
    def _l1_fake(t: Tensor, s: Tensor) -> Tensor:
        _check(t, s, "ddad::l1_discrepancy")
        return t.new_empty((), dtype=torch.float32)

    @torch.library.register_fake("ddad::l1_discrepancy_backward")
    def _l1_backward_fake(
        grad: Tensor, t: Tensor, s: Tensor, need_t: bool = True, need_s: bool = True
    ) -> tuple[Tensor, Tensor]:
        _check(t, s, "ddad::l1_discrepancy_backward")
        grad_t = torch.empty_like(t) if need_t else t.new_empty((0,))
        grad_s = torch.empty_like(s) if need_s else s.new_empty((0,))
        return grad_t, grad_s

    def _setup_context(ctx, inputs, output) -> None:
        t, s = inputs
        ctx.save_for_backward(t, s)

    def _backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        t, s = ctx.saved_tensors
        need_t, need_s = ctx.needs_input_grad
        grad_t, grad_s = torch.ops.ddad.l1_discrepancy_backward.default(grad, t, s, need_t, need_s)
        return (grad_t if need_t else None), (grad_s if need_s else None)

    torch.library.register_autograd("ddad::l1_discrepancy", _backward, setup_context=_setup_context)


def l1_discrepancy(t: Tensor, s: Tensor, log1p: bool = False) -> Tensor:
    """Mean absolute error between teacher and student outputs, fused; a 0-dim fp32 tensor.

    t, s: logits (N, C) or logit maps (N, C, H, W) of the same shape, dtype (float32, bfloat16 or
    float16) and device, in any memory format. log1p: return ``log(1 + L1)`` instead (the
    generator's objective for segmentation in DFAD); autograd goes through both. Inputs of two
    different float dtypes (e.g. an fp32 teacher and a bf16 student under AMP) are promoted to the
    wider one first, at the cost of one copy, as the eager reference computes in fp32 anyway.
    """
    if AVAILABLE and t.dtype != s.dtype and t.is_floating_point() and s.is_floating_point():
        dtype = torch.promote_types(t.dtype, s.dtype)
        t, s = t.to(dtype), s.to(dtype)
    loss = torch.ops.ddad.l1_discrepancy.default(t, s) if AVAILABLE else losses.l1_discrepancy(t, s)
    return torch.log1p(loss) if log1p else loss
