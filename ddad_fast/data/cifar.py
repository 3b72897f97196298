"""CIFAR-10 and CIFAR-100 from the python pickle batches of
https://www.cs.toronto.edu/~kriz/cifar.html (32x32 RGB, 50000 train / 10000 test)."""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .common import DataError, DatasetInfo, to_tensor_dataset

NATIVE_SIZE = 32
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataclass(frozen=True)
class _Layout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    files_text: str  # how the expected files are named in error messages
    label_key: bytes
    num_classes: int
    mean: tuple[float, ...]  # per-channel normalisation: see REFERENCE_MEAN / REFERENCE_STD
    std: tuple[float, ...]


# The normalisation of DFAD's CIFAR loaders (dataloader.py: the same numbers for CIFAR-10 and
# CIFAR-100), which CMI and Fast-Datafree also use for CIFAR-10, so their published CIFAR-10
# teachers expect it. The std is not the train set's per-pixel std (0.2470, 0.2435, 0.2616); it is
# the reference's, kept so that a published teacher sees the inputs it was trained on. (CMI's and
# Fast-Datafree's CIFAR-100 teachers were trained with mean (0.5071, 0.4867, 0.4408), std
# (0.2675, 0.2565, 0.2761) instead; DFAD's are the ones used here.)
REFERENCE_MEAN = (0.4914, 0.4822, 0.4465)
REFERENCE_STD = (0.2023, 0.1994, 0.2010)


LAYOUTS = {
    "cifar10": _Layout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "data_batch_1..5 and test_batch",
        b"labels",
        10,
        REFERENCE_MEAN,
        REFERENCE_STD,
    ),
    "cifar100": _Layout(
        "cifar-100-python",
        ("train",),
        ("test",),
        "train and test",
        b"fine_labels",
        100,
        REFERENCE_MEAN,
        REFERENCE_STD,
    ),
}


def _find_folder(name: str, root: Path, layout: _Layout) -> Path:
    """``root/<layout.folder>`` or ``root`` itself, whichever holds every batch file."""
    for folder in (root / layout.folder, root):
        if all((folder / f).is_file() for f in layout.train_files + layout.test_files):
            return folder
    raise DataError(
        f"{name}: expected {root}/{layout.folder}/{layout.files_text} (the python pickle version "
        f"from {URL}), or {root} being that folder; {root} has no such files"
    )


class _Refused(pickle.UnpicklingError):
    pass


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles containers, bytes and numpy arrays only: what a CIFAR batch holds.

    A file that would import anything else (``os.system``, ...) could run code, and is refused.
    """

    ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)


def _read_batch(name: str, path: Path, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 3072) pixels and int64 (N,) labels of one pickled batch."""
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnlyUnpickler(f, encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{name}: {path} was refused: unpickling it would import {e}, which could run code "
            "(a CIFAR batch holds only arrays, lists and bytes)"
        ) from None
    except Exception as e:  # a damaged pickle can fail with almost any exception type
        raise DataError(f"{name}: cannot unpickle {path}: {type(e).__name__}: {e}") from e
    if not isinstance(batch, dict):
        raise DataError(f"{name}: {path} holds a {type(batch).__name__}, not a CIFAR batch dict")
    for key in (b"data", layout.label_key):
        if key not in batch:
            raise DataError(
                f"{name}: {path} is missing key {key!r} (has {sorted(map(repr, batch))})"
            )
    data = np.asarray(batch[b"data"])
    try:
        labels = np.asarray(batch[layout.label_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: {path} has labels that are not integers ({e})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * NATIVE_SIZE**2:
        raise DataError(
            f"{name}: {path} data is {data.dtype} {data.shape}, expected uint8 (N, 3072)"
        )
    if labels.shape != (len(data),):
        raise DataError(f"{name}: {path} has {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= layout.num_classes):
        raise DataError(f"{name}: {path} has labels outside 0..{layout.num_classes - 1}")
    return data, labels


def _read_split(
    name: str, folder: Path, files: tuple[str, ...], layout: _Layout
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (N, 3, 32, 32) pixels in [0, 1] and int64 (N,) labels of the given batch files."""
    batches = [_read_batch(name, folder / f, layout) for f in files]
    data = np.concatenate([d for d, _ in batches])
    labels = np.concatenate([lab for _, lab in batches])
    pixels = torch.from_numpy(data).view(-1, 3, NATIVE_SIZE, NATIVE_SIZE).float().div_(255)
    return pixels, torch.from_numpy(labels)


def load(
    name: str, root: Path, image_size: int
) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of ``name`` ("cifar10" or "cifar100") read from ``root``."""
    layout = LAYOUTS[name]
    folder = _find_folder(name, root, layout)
    info = DatasetInfo(name, layout.num_classes, 3, image_size, layout.mean, layout.std, hflip=True)
    train = to_tensor_dataset(*_read_split(name, folder, layout.train_files, layout), info)
    test = to_tensor_dataset(*_read_split(name, folder, layout.test_files, layout), info)
    return train, test, info
