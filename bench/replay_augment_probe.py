"""The replay probe with augmented replays: does more variety in replayed batches pay?

    python bench/replay_augment_probe.py --method ddad+replay --seeds 0 --budget-scale 5

``bench/study_probe.py`` (same arguments) with every replayed student step changed: the batch
drawn from the memory is flipped left-right (each image with probability 1/2) and cropped back to
its size from a 2-pixel reflect padding at a random offset, and the teacher is run again on it
(its cached outputs no longer fit the images), as CMI and Fast-Datafree augment their memories.
A replayed step then costs a teacher forward more. The package keeps the plain replay: this
setting did not pay on Fashion-MNIST (bench/RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.study_probe

from bench import study_probe
from ddad_fast.distributed import average_gradients
from ddad_fast.trainer import DDADTrainer

PAD = 2  # pixels of reflect padding the random crop moves within


def flip_and_crop(images: Tensor, rng: torch.Generator) -> Tensor:
    """Each image of ``images`` (N, C, H, W) flipped left-right with probability 1/2, then cropped
    to H x W from its ``PAD``-pixel reflect padding at an offset drawn by ``rng``: (N, C, H, W)."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=rng, device=images.device) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (PAD, PAD, PAD, PAD), mode="reflect")
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, n), generator=rng, device=images.device)
    rows = (torch.arange(h, device=images.device) + dy[:, None])[:, None, :, None]
    cols = (torch.arange(w, device=images.device) + dx[:, None])[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channels = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channels, rows, cols]


def augmented_student_step(self: DDADTrainer, replay: bool = False) -> Tensor:
    """DDADTrainer.student_step with its replayed batches augmented and scored by the teacher."""
    if not replay:
        return plain_student_step(self, replay)
    self.ops.step_begin()
    images, _ = self.memory.sample(self.batch, self.noise_rng)
    images = flip_and_crop(images, self.noise_rng)
    with torch.no_grad(), self.ops.autocast(self.device):
        t_logits = self.teacher_outputs(images)
    loss = self._replayed_student_loss(images, t_logits)
    self.opt_student.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(self.student.parameters(), self.dist)
    self.opt_student.step()
    return loss.detach()


plain_student_step = DDADTrainer.student_step

if __name__ == "__main__":
    DDADTrainer.student_step = augmented_student_step
    sys.exit(study_probe.main())
