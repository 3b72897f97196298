"""Data-parallel DDAD on PyTorch's own engine: torch.distributed (NCCL on GPUs, gloo on CPU).

Launch with ``torchrun --nproc_per_node=N -m ddad_fast distill ...``; torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) is all it reads.

What is global and what is per rank:
- ``batch_size`` is the global batch: each rank draws ``batch_size / world_size`` noise vectors
  from its own generator (seeded by seed and rank), so the settings mean the same at any world size.
- The teacher's BN-statistics term matches the *global* batch: ``global_bn_stats_loss`` all-reduces
  per-channel sums and sums of squares, not per-rank means (a mean of per-rank norms is a different,
  larger loss, and its gradient depends on how the batch is split).
- The L1 terms are per-rank batch means; ``average_gradients`` averages the gradients after each
  backward, which for equal per-rank batches is the gradient of the global-batch mean. It is what
  DDP does, done outside the models: bucketed all-reduces after the backward, with no wrapper
  around the forward, so that torch.compile traces the bare models (it cannot trace DDP's forward
  with fullgraph=True). The terms not linear in a batch mean (segmentation's ``-log(1 + L1)``,
  DAFL's entropy) take the global mean first (``global_mean``), so that the generator's
  objective is that of one process. The ranks start from rank 0's weights
  (``broadcast_state``), as under DDP.
- The student's and the generator's own BatchNorm layers normalise with per-rank batch statistics,
  as plain DDP does; this is the one way a run depends on the world size beyond its noise.
  ``--sync-bn`` (GPUs, eager backend) makes them torch's SyncBatchNorm instead.
- Control messages (stop requests, non-finite flags, RNG states) travel on a gloo group on the
  host, so they never queue behind, or synchronise, the GPU stream.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. The default is a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    cpu_group: Any = None  # the gloo group for host-side control messages (None: the default one)
    owns_group: bool = False  # whether this context initialised the process group

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that evaluates, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher with its environment) started a multi-process job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str) -> DistContext:
    """The job's context; initialises the process group when torchrun started several ranks.

    The backend follows ``rank_device(device)``: NCCL for CUDA, gloo for the CPU. Without
    torchrun's environment it initialises nothing; a process group that already exists is joined.
    """
    if dist.is_available() and dist.is_initialized():
        return _context(owns=False)
    if not launched_by_torchrun():
        return SINGLE
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    env = DistContext(
        world_size=int(os.environ["WORLD_SIZE"]), local_rank=int(os.environ.get("LOCAL_RANK", "0"))
    )
    dev = rank_device(device, env)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    return _context(owns=True)


def rank_device(name: str, ctx: DistContext) -> torch.device:
    """This rank's device for the config's ``device``.

    ``auto`` is CUDA where present, else the CPU; ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK``
    (``cuda:0`` in a single process: ``torch.cuda.set_device`` and NCCL want an index); anything
    else is passed to torch.device.
    """
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", ctx.local_rank)
    if name == "auto":
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but this torch build sees no CUDA GPU")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}: give auto, cpu, cuda or cuda:N") from None


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA where present, else CPU; anything else is passed to torch.device."""
    return rank_device(name, SINGLE)


def _context(owns: bool) -> DistContext:
    world = dist.get_world_size()
    # NCCL only moves device tensors; host-side control needs a gloo group of its own.
    cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    return DistContext(
        rank=dist.get_rank(),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        cpu_group=cpu_group,
        owns_group=owns,
    )


def sync_batchnorm(
    student: nn.Module, generator: nn.Module, device: torch.device, ctx: DistContext, ops: Any
) -> tuple[nn.Module, nn.Module]:
    """The student and the generator with their BatchNorm layers made torch's SyncBatchNorm
    (statistics over every rank's batch); refused in one line where it cannot run: on CPU
    (SyncBatchNorm has CUDA kernels only), and for a compiled backend on several ranks (its
    collectives are not traceable in one full graph)."""
    if device.type != "cuda":
        raise ConfigError("sync_bn needs CUDA GPUs (torch's SyncBatchNorm has no CPU kernels)")
    if ctx.distributed and ops.compile:
        raise ConfigError(
            f"sync_bn with --backend {ops.name} on several ranks: SyncBatchNorm's collectives "
            "break torch.compile's full graph; use --backend eager with --sync-bn"
        )
    convert = nn.SyncBatchNorm.convert_sync_batchnorm
    return convert(student), convert(generator)


BUCKET_BYTES = 25 * 2**20  # gradients per all-reduce, as DDP's default bucket


def broadcast_state(module: nn.Module, ctx: DistContext) -> None:
    """Every rank's parameters and buffers set to rank 0's (a no-op in one process)."""
    if ctx.distributed:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_gradients(params: Iterable[nn.Parameter], ctx: DistContext) -> None:
    """Replace each gradient of ``params`` by its mean over the ranks, in place (a no-op in one
    process): one all-reduce per bucket of about ``BUCKET_BYTES`` of same-dtype gradients.

    Parameters without a gradient are skipped; every rank runs the same steps, so the set is the
    same everywhere. On NCCL the all-reduces are queued on the stream: no host sync.
    """
    if not ctx.distributed:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for dtype in sorted({g.dtype for g in grads}, key=str):  # the same order on every rank
        bucket: list[Tensor] = []
        size = 0
        for g in (g for g in grads if g.dtype == dtype):
            bucket.append(g)
            size += g.numel() * g.element_size()
            if size >= BUCKET_BYTES:
                _all_reduce_mean(bucket, ctx.world_size)
                bucket, size = [], 0
        if bucket:
            _all_reduce_mean(bucket, ctx.world_size)


def _all_reduce_mean(grads: list[Tensor], world_size: int) -> None:
    """One all-reduce of ``grads`` (same dtype) flattened together, then each divided in place."""
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)  # a sum: gloo has no average
    flat.div_(world_size)
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view(g.shape))


def per_rank_batch(batch_size: int, ctx: DistContext) -> int:
    """This rank's share of the global batch; refuses a batch the ranks cannot share evenly."""
    if batch_size % ctx.world_size:
        raise ConfigError(
            f"batch_size {batch_size} is the global batch and must divide evenly among the "
            f"{ctx.world_size} ranks"
        )
    per_rank = batch_size // ctx.world_size
    if per_rank < 2:
        raise ConfigError(
            f"batch_size {batch_size} over {ctx.world_size} ranks leaves {per_rank} image per "
            "rank; BN statistics need at least 2"
        )
    return per_rank


def global_bn_stats_loss(x: Tensor, running_mean: Tensor, running_var: Tensor) -> Tensor:
    """``losses.bn_stats_loss`` over the global batch: every rank's images count.

    x: (n, C, H, W) this rank's input to the BatchNorm layer; running_mean, running_var: (C,).
    Each rank sums ``d = x - running_mean`` and ``d**2`` per channel and counts its elements; one
    autograd-aware all-reduce adds them up (a functional collective); then
    ``mean - running_mean = S1/N`` and the biased ``var = S2/N - (S1/N)**2``. Shifting by the
    running mean keeps the one-pass variance accurate in fp32 (``d`` is near zero on average).
    Every rank returns the same scalar. Its backward sums every rank's gradient into each rank's, so
    after ``average_gradients`` they are those of the global-batch loss.
    Without a process group (one process) it equals ``bn_stats_loss`` up to rounding.
    """
    rm = running_mean.float()
    d = x.float() - rm[None, :, None, None]
    count = torch.full((1,), float(d.numel() // d.shape[1]), device=d.device)
    stats = torch.cat([d.sum(dim=(0, 2, 3)), (d * d).sum(dim=(0, 2, 3)), count])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # The functional collective: autograd-aware (backward all-reduces the gradients) and
        # traceable by torch.compile, unlike the deprecated torch.distributed.nn.functional one.
        from torch.distributed import _functional_collectives as fc

        stats = fc.all_reduce(stats, "sum", dist.group.WORLD)
    channels = x.shape[1]
    n = stats[-1]
    shift = stats[:channels] / n  # mean - running_mean
    var = (stats[channels : 2 * channels] / n - shift * shift).clamp_min(0)
    return torch.linalg.vector_norm(shift) + torch.linalg.vector_norm(var - running_var.float())


def global_mean(x: Tensor) -> Tensor:
    """x (any shape, the same on every rank) averaged over the ranks, autograd-aware.

    For a term not linear in the batch (segmentation's ``-log(1 + L1)``, DAFL's entropy of the
    batch's mean class probabilities): applied to this average, every rank computes the term of
    the global batch, and after ``average_gradients`` the gradients are the global term's (the
    functional all-reduce's backward sums every rank's gradient into each). x itself without a
    process group of more than one rank.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed import _functional_collectives as fc

        return fc.all_reduce(x, "sum", dist.group.WORLD) / dist.get_world_size()
    return x


def any_rank(ctx: DistContext, *flags: bool) -> list[bool]:
    """Each flag OR-ed over the ranks (one small all-reduce on the host); local flags otherwise."""
    if not ctx.distributed:
        return list(flags)
    t = torch.tensor([float(f) for f in flags])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=ctx.cpu_group)
    return [bool(v) for v in t.tolist()]


def gather_to_all(ctx: DistContext, t: Tensor) -> list[Tensor]:
    """Every rank's copy of the CPU tensor ``t`` (same shape on every rank), in rank order."""
    if not ctx.distributed:
        return [t]
    out = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(out, t.contiguous(), group=ctx.cpu_group)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier(group=ctx.cpu_group)


def shutdown(ctx: DistContext) -> None:
    """Barrier, then destroy the process group this context created (a clean exit with gloo)."""
    if ctx.distributed and ctx.owns_group and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
