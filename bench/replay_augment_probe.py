"""The replay probe with augmented replays: does more variety in replayed batches pay?

    python bench/replay_augment_probe.py --method ddad+replay --seeds 0 --budget-scale 5

``bench/study_probe.py`` (same arguments) with every replayed batch changed: the images drawn from
the memory are flipped left-right (each with probability 1/2) and cropped back to their size from
a 2-pixel reflect padding at a random offset, and the teacher is run again on them (its stored
outputs no longer fit the images), as CMI and Fast-Datafree augment their memories. A replayed
step then costs a teacher forward more. The package keeps the plain replay: this setting did not
pay on Fashion-MNIST (bench/RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.study_probe

from bench import study_probe
from ddad_fast.data.augment import crop_windows
from ddad_fast.trainer import DDADTrainer

PAD = 2  # pixels of reflect padding the random crop moves within


def flip_and_crop(images: Tensor, rng: torch.Generator) -> Tensor:
    """Each image of ``images`` (N, C, H, W) flipped left-right with probability 1/2, then cropped
    to H x W from its ``PAD``-pixel reflect padding at an offset drawn by ``rng``: (N, C, H, W)."""
    n, _, h, w = images.shape
    flip = torch.rand(n, generator=rng, device=images.device) < 0.5
    padded = F.pad(images, (PAD, PAD, PAD, PAD), mode="reflect")
    dy, dx = torch.randint(0, 2 * PAD + 1, (2, n), generator=rng, device=images.device)
    # The padding of a flipped image is the flipped padding: the crop at dx of the one is the
    # mirrored crop at 2 * PAD - dx of the other.
    dx = torch.where(flip, 2 * PAD - dx, dx)
    return crop_windows(padded, dy, dx, flip, h, w)


def augmented_replayed_batch(self: DDADTrainer) -> tuple[Tensor, Tensor]:
    """DDADTrainer.replayed_batch with its images augmented and scored by the teacher again."""
    images, _ = self.memory.sample(self.batch, self.noise_rng)
    images = flip_and_crop(images, self.noise_rng)
    with torch.no_grad(), self.ops.autocast(self.device):
        return images, self.teacher_outputs(images)


if __name__ == "__main__":
    DDADTrainer.replayed_batch = augmented_replayed_batch
    sys.exit(study_probe.main())
