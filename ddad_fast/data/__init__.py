"""Datasets for teacher training and evaluation, loaded from local files only (nothing downloads).

``load_dataset(name)`` returns (train, test, info); every item is (float32 (C, H, W) normalised
image, label): an int64 class for classification datasets; for segmentation ones
(``dataset_task(name) == "seg"``) an (H, W) map of classes, uint8 for CamVid and NYUv2 and int64
for the composite data (``iterate_batches`` yields int64 either way), where pixels labelled
``info.ignore_index`` count nowhere. The in-memory datasets are ``TensorDataset``s whose
``.tensors`` can be moved to the device whole; Caltech-101 decodes its JPEGs on access.
"""

from pathlib import Path

from torch.utils.data import Dataset

from . import caltech, camvid, cifar, composite, digits, fashion_mnist, nyuv2
from .augment import seg_augment, train_augment
from .common import DataError, DatasetInfo, shape_info

__all__ = [
    "DataError",
    "DatasetInfo",
    "dataset_names",
    "dataset_task",
    "default_image_size",
    "load_dataset",
    "seg_augment",
    "shape_info",
    "train_augment",
]

_DEFAULT_SIZES = {
    "caltech101": caltech.DEFAULT_SIZE,
    "cifar10": cifar.NATIVE_SIZE,
    "cifar100": cifar.NATIVE_SIZE,
    "digits": digits.NATIVE_SIZE,
    "fashion-mnist": fashion_mnist.NATIVE_SIZE,
    "camvid": camvid.DEFAULT_SIZE,
    "nyuv2": nyuv2.DEFAULT_SIZE,
    "composite-digits": composite.DEFAULT_SIZE,
    "composite-fashion-mnist": composite.DEFAULT_SIZE,
}
_SEGMENTATION = frozenset({"camvid", "nyuv2", "composite-digits", "composite-fashion-mnist"})


def dataset_names() -> list[str]:
    """The names ``load_dataset`` accepts, sorted."""
    return sorted(_DEFAULT_SIZES)


def _check_name(name: str) -> None:
    if name not in _DEFAULT_SIZES:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}")


def dataset_task(name: str) -> str:
    """``"seg"`` for a segmentation dataset, ``"cls"`` for a classification one."""
    _check_name(name)
    return "seg" if name in _SEGMENTATION else "cls"


def default_image_size(name: str) -> int:
    """The default ``image_size`` of ``load_dataset``: the side images are resized to, or for
    CamVid and NYUv2 the side of the random train crop."""
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
    fashion-mnist and composite-fashion-mnist, ./data/<name> for the others; digits and
    composite-digits (bundled with scikit-learn) ignore it. image_size: the side length images
    are resized to; CamVid and NYUv2 resize to a shorter side of 256 and take this as the side
    of their random train crop (default ``default_image_size(name)``). split_seed: seeds the
    80/20 stratified split of the datasets without an official test set (digits, caltech101); the
    others ignore it.
    """
    _check_name(name)
    size = default_image_size(name) if image_size is None else image_size
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    fashion = name in ("fashion-mnist", "composite-fashion-mnist")
    default_root = fashion_mnist.DEFAULT_ROOT if fashion else Path("data") / name
    path = Path(default_root if root is None else root).expanduser().absolute()
    train, test, info = _load(name, path, size, split_seed)
    for split, data in (("training", train), ("test", test)):
        if len(data) == 0:  # an empty test split would score 0.00% without a word
            raise DataError(f"{name} at {path}: its {split} split holds no images")
    return train, test, info


def _load(
    name: str, path: Path, size: int, split_seed: int
) -> tuple[Dataset, Dataset, DatasetInfo]:
    """``load_dataset``'s dispatch to the loader of ``name``, settings checked."""
    if name == "digits":
        return digits.load(size, split_seed)
    if name.startswith("composite-"):
        if size < 16:
            raise DataError(f"{name}: image_size must be at least 16, got {size}")
        return composite.load(name.removeprefix("composite-"), path, size)
    if name == "camvid":
        return camvid.load(path, size)
    if name == "nyuv2":
        return nyuv2.load(path, size)
    if name == "fashion-mnist":
        return fashion_mnist.load(path, size)
    if name == "caltech101":
        return caltech.load(path, size, split_seed)
    return cifar.load(name, path, size)
