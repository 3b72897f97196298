"""Batched on-device augmentation for teacher training: random translation and horizontal flip
(classification), the same random horizontal flip of images and label maps (segmentation)."""

import torch
from torch import Tensor

from .common import DatasetInfo


def train_augment(images: Tensor, info: DatasetInfo, generator: torch.Generator | None) -> Tensor:
    """Randomly translate each image by up to ``max(1, image_size // 8)`` pixels in each direction
    and, when ``info.hflip``, mirror it horizontally with probability 1/2.

    images: (N, C, H, W) normalised, with C = info.in_channels and H = W = info.image_size. The
    translation is a random crop of the image padded by the translation range with the value a
    black (zero) pixel takes after normalisation, ``-mean / std`` per channel, the same as padding
    before normalising. Random numbers come from ``generator`` (on its own device) or, when it is
    None, the global generator of the images' device. Returns (N, C, H, W), same dtype and device;
    one gather for the whole batch, no loop over samples.
    """
    n, c, h, w = images.shape
    if (c, h, w) != (info.in_channels, info.image_size, info.image_size):
        raise ValueError(
            f"train_augment: images are {tuple(images.shape)}, expected (N, {info.in_channels}, "
            f"{info.image_size}, {info.image_size}) for {info.name}"
        )
    pad = max(1, info.image_size // 8)
    mean = torch.tensor(info.mean, dtype=images.dtype, device=images.device)
    std = torch.tensor(info.std, dtype=images.dtype, device=images.device)
    padded = (-mean / std)[None, :, None, None].expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = images

    rng_device = generator.device if generator is not None else images.device
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=rng_device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=rng_device)
    dy, dx = offsets.to(images.device)
    flip = flips.to(images.device).bool() & info.hflip
    rows = dy[:, None] + torch.arange(h, device=images.device)  # (N, H)
    ramp = torch.arange(w, device=images.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ramp, ramp)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # Indices around the channel slice put the (N, H, W) index dims first: result is (N, H, W, C).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def seg_augment(
    images: Tensor, labels: Tensor, info: DatasetInfo, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """Mirror each image (N, C, H, W) and its label map (N, H, W) horizontally with probability
    1/2 when ``info.hflip``; unchanged otherwise. Random numbers as in ``train_augment``."""
    if not info.hflip:
        return images, labels
    rng_device = generator.device if generator is not None else images.device
    flip = torch.randint(0, 2, (len(images),), generator=generator, device=rng_device)
    flip = flip.to(images.device).bool()
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    return images, torch.where(flip[:, None, None], labels.flip(-1), labels)
