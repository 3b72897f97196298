"""The single place the trainer takes its ops from: a backend names an implementation of each
loss op and how the two players' loss functions run (compiled or not, AMP, memory format)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from . import losses
from .errors import ConfigError
from .ops import bn_stats as fused_bn_stats
from .ops import l1 as fused_l1


@dataclass(frozen=True)
class DistillOps:
    """The loss ops of one backend and how the trainer's loss functions run.

    l1_discrepancy(t, s) -> scalar: mean |t - s| over logits (N, C) or maps (N, C, H, W).
    bn_stats_loss(x, running_mean, running_var) -> scalar: one BN layer's statistics term.
    """

    name: str
    l1_discrepancy: Callable[[Tensor, Tensor], Tensor]
    bn_stats_loss: Callable[[Tensor, Tensor, Tensor], Tensor]
    compile: bool = False  # torch.compile(fullgraph=True) the student and generator loss functions
    cuda_graphs: bool = False  # on CUDA, compile with mode="reduce-overhead" (CUDA graph trees)
    channels_last: bool = False  # models (and so activations) in channels_last
    fused_optimizers: bool = False  # SGD/Adam with fused=True
    cuda_amp_dtype: torch.dtype | None = None  # autocast dtype on CUDA (None: fp32)
    cpu_amp_dtype: torch.dtype | None = None  # autocast dtype on CPU (None: fp32)

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype of this backend on ``device`` (None: AMP off, all fp32)."""
        return self.cuda_amp_dtype if device.type == "cuda" else self.cpu_amp_dtype

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast context of this backend on ``device`` (a no-op where AMP is off)."""
        dtype = self.amp_dtype(device)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def compiled(self, fn: Callable, device: torch.device) -> Callable:
        """``fn`` as this backend runs it: itself, or torch.compile'd without graph breaks."""
        if not self.compile:
            return fn
        graphs = self.cuda_graphs and device.type == "cuda"
        mode = "reduce-overhead" if graphs else None
        return torch.compile(fn, fullgraph=True, dynamic=False, mode=mode)

    def step_begin(self) -> None:
        """Mark a new training step for CUDA graph trees (their outputs of the last step die)."""
        if self.compile and self.cuda_graphs and torch.cuda.is_available():
            torch.compiler.cudagraph_mark_step_begin()


EAGER = DistillOps("eager", losses.l1_discrepancy, losses.bn_stats_loss)

# The fast backend: the same loop and losses, compiled, in bf16 autocast on CUDA (BN statistics
# and losses still accumulate in fp32; the teacher's and the student's output layers run in fp32,
# so the logits are fp32: ``amp.fp32_output_layer``), channels_last, fused optimisers, CUDA graphs
# on GPU, the fused ops: L1 from the C++/CUDA extension, BN statistics from Triton (CUDA) or C++
# (CPU); each falls back to its eager reference, with one warning, where not built.
FAST = DistillOps(
    "fast",
    fused_l1.l1_discrepancy,
    fused_bn_stats.bn_stats_loss,
    compile=True,
    cuda_graphs=True,
    channels_last=True,
    fused_optimizers=True,
    cuda_amp_dtype=torch.bfloat16,
)

_BACKENDS: dict[str, DistillOps] = {"eager": EAGER, "fast": FAST}


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
