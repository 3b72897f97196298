"""Datasets for teacher training and evaluation, loaded from local files only (nothing downloads).

``load_dataset(name)`` returns (train, test, info); every item is (float32 (C, H, W) normalised
image, int64 scalar label). The in-memory datasets are ``TensorDataset``s whose ``.tensors`` can be
moved to the device whole; Caltech-101 decodes its JPEGs on access.
"""

from pathlib import Path

from torch.utils.data import Dataset

from . import caltech, cifar, digits, fashion_mnist
from .augment import train_augment
from .common import DataError, DatasetInfo

__all__ = [
    "DataError",
    "DatasetInfo",
    "dataset_names",
    "default_image_size",
    "load_dataset",
    "train_augment",
]

_DEFAULT_SIZES = {
    "caltech101": caltech.DEFAULT_SIZE,
    "cifar10": cifar.NATIVE_SIZE,
    "cifar100": cifar.NATIVE_SIZE,
    "digits": digits.NATIVE_SIZE,
    "fashion-mnist": fashion_mnist.NATIVE_SIZE,
}


def dataset_names() -> list[str]:
    """The names ``load_dataset`` accepts, sorted."""
    return sorted(_DEFAULT_SIZES)


def _check_name(name: str) -> None:
    if name not in _DEFAULT_SIZES:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")


def default_image_size(name: str) -> int:
    """The side length ``load_dataset`` resizes to when no image_size is given."""
    _check_name(name)
    return _DEFAULT_SIZES[name]


def load_dataset(
    name: str,
    root: str | Path | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """(train, test, info) of dataset ``name``.

    root: the folder holding the files; None means /usr/share/datasets/fashion-mnist for
    fashion-mnist and ./data/<name> for CIFAR and Caltech-101; digits (bundled with scikit-learn)
    ignores it. image_size: the side length images are resized to (default
    ``default_image_size(name)``). split_seed: seeds the 80/20 stratified split of the datasets
    without an official test set (digits, caltech101); the others ignore it.
    """
    _check_name(name)
    size = default_image_size(name) if image_size is None else image_size
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    default_root = fashion_mnist.DEFAULT_ROOT if name == "fashion-mnist" else Path("data") / name
    path = Path(default_root if root is None else root).expanduser().absolute()
    if name == "digits":
        return digits.load(size, split_seed)
    if name == "fashion-mnist":
        return fashion_mnist.load(path, size)
    if name == "caltech101":
        return caltech.load(path, size, split_seed)
    return cifar.load(name, path, size)
