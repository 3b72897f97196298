"""Pieces shared by the dataset loaders: the info record, the error type, resizing, normalisation
and the seeded stratified split."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import DDADError

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the augmentation need to know about a loaded dataset (or, from
    ``shape_info``, what a model needs alone, for a run without data)."""

    name: str | None  # None: no dataset loaded
    num_classes: int
    in_channels: int
    image_size: int  # the side images are resized to (CamVid, NYUv2: the side of the train crop)
    mean: tuple[float, ...]  # per-channel normalisation applied after scaling pixels to [0, 1]
    std: tuple[float, ...]
    hflip: bool  # whether random horizontal flips are a valid augmentation
    ignore_index: int | None = None  # segmentation: the label value no loss or score counts


def shape_info(num_classes: int, in_channels: int, image_size: int) -> DatasetInfo:
    """The facts a model and the generator need, for a run without a loaded dataset: no name and
    no normalisation (which only evaluation data needs)."""
    return DatasetInfo(None, num_classes, in_channels, image_size, (), (), hflip=False)


class DataError(DDADError):
    """A dataset folder is missing, laid out differently from what the loader expects, or holds a
    truncated or corrupt file. The message names the dataset, the path and the expected layout."""


def resize(images: Tensor, size: int) -> Tensor:
    """Bilinear, antialiased resize of (N, C, h, w) images to (N, C, size, size).

    Returned unchanged when the images already have that size.
    """
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def normalise(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(images - mean) / std`` per channel for images (..., C, H, W) holding values in [0, 1]."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device)[:, None, None]
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device)[:, None, None]
    return (images - mean_t) / std_t


def to_tensor_dataset(pixels: Tensor, labels: Tensor, info: DatasetInfo) -> TensorDataset:
    """Resize float32 (N, C, h, w) pixels in [0, 1] to ``info.image_size``, normalise them with
    ``info.mean``/``info.std`` and pair them with int64 (N,) labels."""
    images = normalise(resize(pixels, info.image_size), info.mean, info.std)
    return TensorDataset(images.contiguous(), labels)


def stratified_split(
    labels: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of sample indices into (train, test), both sorted int64 arrays.

    labels: (N,) ints. Classes are visited in increasing order; each class's indices are permuted by
    one ``numpy.random.default_rng(seed)`` (PCG64, identical on every machine) and the first
    ``round(n * test_fraction)`` go to test, clamped to [1, n - 1]; a class with a single sample
    goes to train only.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n = len(members)
        n_test = min(n - 1, max(1, round(n * test_fraction))) if n >= 2 else 0
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
