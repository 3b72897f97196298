"""Batched on-device augmentation for teacher training: random translation and horizontal flip
(classification), DFAD's random crop and horizontal flip of images and label maps together
(segmentation)."""

import torch
from torch import Tensor

from .common import DatasetInfo


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """int64 ``shape`` uniform in [0, high) on ``device``, drawn from ``generator`` (on its own
    device) or, when it is None, from the global generator of ``device``."""
    rng_device = generator.device if generator is not None else device
    return torch.randint(0, high, shape, generator=generator, device=rng_device).to(device)


def _pad(x: Tensor, fill: Tensor | int, rows: int, cols: int) -> Tensor:
    """x (..., H, W) with ``rows`` rows above and below and ``cols`` columns left and right of
    ``fill`` (broadcast to (..., 1, 1)): (..., H + 2 rows, W + 2 cols)."""
    h, w = x.shape[-2:]
    out = x.new_empty(*x.shape[:-2], h + 2 * rows, w + 2 * cols)
    out[...] = fill
    out[..., rows : rows + h, cols : cols + w] = x
    return out


def _black(info: DatasetInfo, images: Tensor) -> Tensor:
    """(C, 1, 1): the value a black (zero) pixel takes after normalisation, ``-mean / std``."""
    mean = torch.tensor(info.mean, dtype=images.dtype, device=images.device)
    std = torch.tensor(info.std, dtype=images.dtype, device=images.device)
    return (-mean / std)[:, None, None]


def _windows(dy: Tensor, dx: Tensor, flip: Tensor, h: int, w: int) -> tuple[Tensor, ...]:
    """Advanced indices (N, 1, 1), (N, h, 1), (N, 1, w) that pick from each sample i the h x w
    window whose top left corner is (dy[i], dx[i]), its columns reversed where flip[i].

    dy, dx: int64 (N,); flip: bool (N,). ``maps[index]`` crops (N, H', W') maps to (N, h, w);
    ``images[index[0], :, index[1], index[2]]`` crops (N, C, H', W') images to (N, h, w, C) (the
    index dims first).
    """
    ramp = torch.arange(w, device=dx.device)
    rows = dy[:, None] + torch.arange(h, device=dy.device)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - ramp, ramp)
    return (
        torch.arange(len(dy), device=dy.device)[:, None, None],
        rows[:, :, None],
        cols[:, None, :],
    )


def _crop_images(images: Tensor, index: tuple[Tensor, ...]) -> Tensor:
    """(N, C, h, w) windows of images (N, C, H', W') picked by ``_windows``'s ``index``."""
    batch, rows, cols = index
    return images[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()


def crop_windows(images: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, h: int, w: int) -> Tensor:
    """From each image i of ``images`` (N, C, H', W') the h x w window whose top left corner is
    (dy[i], dx[i]), mirrored where flip[i] (int64, int64, bool (N,)): (N, C, h, w), one gather."""
    return _crop_images(images, _windows(dy, dx, flip, h, w))


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
    padded = _pad(images, _black(info, images), pad, pad)
    dy, dx = _randint(2 * pad + 1, (2, n), generator, images.device)
    flip = _randint(2, (n,), generator, images.device).bool() & info.hflip
    return crop_windows(padded, dy, dx, flip, h, w)


def seg_augment(
    images: Tensor, labels: Tensor, info: DatasetInfo, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """DFAD's segmentation train transform, drawn per sample: a random ``info.image_size``
    square crop of each image (N, C, H, W) and its label map (N, H, W), then, when
    ``info.hflip``, a horizontal flip of both with probability 1/2.

    A side shorter than the crop S is first padded on both ends by ``ceil((S - side) / 2)``,
    images with a black pixel (``-mean / std``), labels with ``info.ignore_index``. (DFAD's
    ``ExtRandomCrop(pad_if_needed=True)`` pads by that amount too, on all four sides and with
    label 0; in DFAD's runs it never pads, the shorter side being 256 and the crop 128.) As
    torchvision's crop, an image of exactly the crop size draws no offsets, so a batch already
    at S x S draws only its flips. Random numbers as in ``train_augment``: crop rows, crop
    columns, then flips. Returns (N, C, S, S) and (N, S, S), same dtypes and device; one gather
    each for the whole batch, no loop over samples.
    """
    n, c, h, w = images.shape
    if c != info.in_channels or labels.shape != (n, h, w):
        raise ValueError(
            f"seg_augment: images {tuple(images.shape)} and labels {tuple(labels.shape)}; "
            f"expected (N, {info.in_channels}, H, W) and (N, H, W) for {info.name}"
        )
    size, device = info.image_size, images.device
    rows, cols = max(0, (size - h + 1) // 2), max(0, (size - w + 1) // 2)
    if rows or cols:
        images = _pad(images, _black(info, images), rows, cols)
        labels = _pad(labels, info.ignore_index, rows, cols)
        h, w = h + 2 * rows, w + 2 * cols
    if (h, w) == (size, size):
        dy = dx = torch.zeros(n, dtype=torch.long, device=device)
    else:
        dy = _randint(h - size + 1, (n,), generator, device)
        dx = _randint(w - size + 1, (n,), generator, device)
    if info.hflip:
        flip = _randint(2, (n,), generator, device).bool()
    else:
        flip = torch.zeros(n, dtype=torch.bool, device=device)
    index = _windows(dy, dx, flip, size, size)
    return _crop_images(images, index), labels[index]
