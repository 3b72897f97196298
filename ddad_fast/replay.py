"""A memory of generated images and the teacher's outputs for them, so that a student step can
train on past samples for the cost of one student forward and backward (``--replay``)."""

from __future__ import annotations

import torch
from torch import Tensor


class ReplayMemory:
    """The last ``size`` generated images and the teacher's outputs for them, on their device.

    A ring buffer: ``add`` copies a batch in over the oldest samples, ``sample`` draws a batch
    uniformly with replacement. The bookkeeping (how many samples it holds, where the next goes) is
    host-side, so neither adds a host sync. Images keep the dtype they were made in (bf16 under the
    fast backend's autocast on CUDA: storing them loses nothing the student would have seen);
    outputs are the teacher's logits (N, K) or logit maps (N, K, H, W), fp32 in both backends.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a replay memory holds at least 1 sample, got {size}")
        self.size = size
        self.count = 0  # samples held
        self.head = 0  # the slot the next sample goes to
        self.images: Tensor | None = None  # (size, C, H, W), allocated by the first add
        self.outputs: Tensor | None = None  # (size, K) or (size, K, H, W)

    def add(self, images: Tensor, outputs: Tensor) -> None:
        """Store ``images`` (n, C, H, W) and the teacher's ``outputs`` for them (detached copies);
        of a batch larger than the memory, its last ``size`` samples."""
        images, outputs = images.detach()[-self.size :], outputs.detach()[-self.size :]
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
            self.outputs = outputs.new_empty((self.size, *outputs.shape[1:]))
        n = images.shape[0]
        first = min(n, self.size - self.head)  # up to the end of the buffer, then from its start
        self.images[self.head : self.head + first].copy_(images[:first])
        self.outputs[self.head : self.head + first].copy_(outputs[:first])
        self.images[: n - first].copy_(images[first:])
        self.outputs[: n - first].copy_(outputs[first:])
        self.head = (self.head + n) % self.size
        self.count = min(self.count + n, self.size)

    def clear(self) -> None:
        """Forget every sample (the buffers stay allocated)."""
        self.count = self.head = 0

    def holds(self, n: int) -> bool:
        """Whether the memory holds at least ``n`` samples (a batch to replay)."""
        return self.count >= n

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` stored (images, outputs) pairs drawn uniformly with replacement by ``generator``
        (on the memory's device): (n, C, H, W), and (n, K) or (n, K, H, W)."""
        if self.images is None or self.outputs is None or not self.holds(1):
            raise RuntimeError("the replay memory is empty")
        index = torch.randint(self.count, (n,), device=self.images.device, generator=generator)
        return self.images.index_select(0, index), self.outputs.index_select(0, index)
