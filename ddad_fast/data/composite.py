"""The embedded segmentation default: composite canvases of real digits or Fashion-MNIST items.

A toy dataset, built here and not a published benchmark: each canvas is black, with 2 or 3 real
items (scikit-learn's 8x8 digits or Fashion-MNIST's 28x28 images, resized to half the canvas side)
pasted at random places; later items cover earlier ones. The label map is ``item class + 1`` where
the item's pixel is ink (intensity above ``INK``) and 0 (background) elsewhere, so there are 11
classes and no ignored pixels. Train canvases use only the source's train items and test canvases
only its test items (digits: the seeded stratified 80/20 split; Fashion-MNIST: its own splits), so
no item is shared. Everything is drawn from ``numpy.random.default_rng(seed)``: the same canvases
on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from . import digits, fashion_mnist
from .common import DatasetInfo, normalise, resize

NUM_CLASSES = 11  # background + 10 item classes
INK = 0.3  # an item's pixel (in [0, 1]) above this is labelled with its class
ITEMS_PER_CANVAS = (2, 3)
TRAIN_CANVASES = 3000
TEST_CANVASES = 500
DEFAULT_SIZE = 32
SOURCES = ("digits", "fashion-mnist")


def _items(source: str, root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train pixels, train labels, test pixels, test labels): float32 (N, 1, h, w) in [0, 1]
    and int64 (N,), at the source's native size, unnormalised."""
    if source == "digits":
        train, test, info = digits.load(digits.NATIVE_SIZE, split_seed=0)
    else:
        train, test, info = fashion_mnist.load(root, fashion_mnist.NATIVE_SIZE)
    mean, std = info.mean[0], info.std[0]
    train_x, train_y = train.tensors
    test_x, test_y = test.tensors
    return train_x * std + mean, train_y, test_x * std + mean, test_y


def compose(
    pixels: Tensor, labels: Tensor, count: int, size: int, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """``count`` canvases of side ``size`` from items (N, 1, s, s) in [0, 1] with labels (N,).

    Returns float32 (count, 1, size, size) pixels in [0, 1] and int64 (count, size, size) label
    maps (item class + 1 on ink, 0 elsewhere). Each canvas takes 2 or 3 items drawn uniformly,
    each at a uniform top-left corner; a later item overwrites the pixels and labels under its ink.
    """
    s = pixels.shape[-1]
    canvases = torch.zeros(count, 1, size, size)
    maps = torch.zeros(count, size, size, dtype=torch.long)
    for i in range(count):
        k = int(rng.integers(ITEMS_PER_CANVAS[0], ITEMS_PER_CANVAS[1] + 1))
        for j in rng.integers(0, len(pixels), size=k):
            y, x = (int(v) for v in rng.integers(0, size - s + 1, size=2))
            item = pixels[j, 0]
            ink = item > INK
            window = canvases[i, 0, y : y + s, x : x + s]
            window[ink] = item[ink]
            maps[i, y : y + s, x : x + s][ink] = int(labels[j]) + 1
    return canvases, maps


def load(
    source: str, root: Path, image_size: int, seed: int = 0
) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of the composite canvases built from ``source`` (digits or
    fashion-mnist, read from ``root``). Items are resized to ``image_size // 2``; images are
    normalised by the train canvases' mean and std."""
    train_x, train_y, test_x, test_y = _items(source, root)
    item_size = image_size // 2
    train_x = resize(train_x, item_size).clamp(0, 1)
    test_x = resize(test_x, item_size).clamp(0, 1)
    rng = np.random.default_rng(seed)
    train_images, train_maps = compose(train_x, train_y, TRAIN_CANVASES, image_size, rng)
    test_images, test_maps = compose(test_x, test_y, TEST_CANVASES, image_size, rng)
    mean = (round(train_images.mean().item(), 4),)
    std = (round(train_images.std().item(), 4),)
    info = DatasetInfo(
        f"composite-{source}",
        NUM_CLASSES,
        1,
        image_size,
        mean,
        std,
        hflip=source == "fashion-mnist",
        ignore_index=255,
    )
    train = TensorDataset(normalise(train_images, mean, std), train_maps)
    test = TensorDataset(normalise(test_images, mean, std), test_maps)
    return train, test, info
