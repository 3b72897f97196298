"""Fashion-MNIST from the gzipped IDX files (60000 train / 10000 test 28x28 grey images)."""

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .common import DataError, DatasetInfo, to_tensor_dataset

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package installs them
NATIVE_SIZE = 28
# Mean and std of the 60000 training images scaled to [0, 1], computed once from the Debian
# dataset-fashion-mnist files (0.28604, 0.35302).
MEAN = (0.2860,)
STD = (0.3530,)
IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """The uint8 array of shape (d0, ..., d{ndim-1}) stored in a gzipped IDX file.

    The IDX header is a big-endian uint32 magic number followed by one big-endian uint32 per
    dimension; the data must fill the rest of the file exactly.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # not gzip, or a truncated gzip stream
        raise DataError(f"fashion-mnist: cannot decompress {path}: {e}") from e
    header = 4 * (1 + ndim)
    if len(raw) < header:
        raise DataError(f"fashion-mnist: {path} is truncated: {len(raw)} bytes, no IDX header")
    found, *dims = struct.unpack(f">{1 + ndim}I", raw[:header])
    if found != magic:
        raise DataError(f"fashion-mnist: {path} has IDX magic number {found}, expected {magic}")
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(
            f"fashion-mnist: {path} has {len(raw)} bytes, expected {expected} for dims {dims} "
            "(truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (N, 1, 28, 28) pixels in [0, 1] and int64 (N,) labels of one split."""
    images_file, labels_file = (root / f for f in FILES[split])
    images = read_idx(images_file, IMAGES_MAGIC, 3)
    labels = read_idx(labels_file, LABELS_MAGIC, 1)
    if images.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE):
        raise DataError(f"fashion-mnist: {images_file} holds {images.shape[1:]} images, not 28x28")
    if len(images) != len(labels):
        raise DataError(
            f"fashion-mnist: {images_file} has {len(images)} images but {labels_file} has "
            f"{len(labels)} labels"
        )
    if labels.max(initial=0) >= 10:
        raise DataError(f"fashion-mnist: {labels_file} has label {labels.max()}, expected 0..9")
    pixels = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    return pixels, torch.from_numpy(labels.astype(np.int64))


def load(root: Path, image_size: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of Fashion-MNIST read from the four IDX gz files in ``root``."""
    names = FILES["train"] + FILES["test"]
    if not all((root / f).is_file() for f in names):
        raise DataError(
            f"fashion-mnist: expected {root}/{{{','.join(names)}}}; {root} has no such files. "
            "Install them with `apt-get install dataset-fashion-mnist` (into "
            f"{DEFAULT_ROOT}) or point --data-root at a folder holding them"
        )
    info = DatasetInfo("fashion-mnist", 10, 1, image_size, MEAN, STD, hflip=True)
    train = to_tensor_dataset(*_read_split(root, "train"), info)
    test = to_tensor_dataset(*_read_split(root, "test"), info)
    return train, test, info
