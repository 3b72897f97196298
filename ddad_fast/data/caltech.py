"""Caltech-101 from the ``101_ObjectCategories/<class>/*.jpg`` tree, decoded lazily.

The 101 classes are the sorted subfolder names except ``BACKGROUND_Google``, a clutter folder that
is no object category. Images are split per class by the seeded stratified split and prepared as
DFAD's test transform does (``Resize(128)``, ``CenterCrop(128)``, ``Normalize(0.5, 0.5)``): the
shorter side resized to ``image_size``, aspect kept, then the centre square. DFAD's training
transform crops at random along the longer side instead; here the training images are the same
centre squares, and the teacher's own shift-and-flip augmentation (``data.augment``) varies them.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from .common import DataError, DatasetInfo, normalise, stratified_split

FOLDER = "101_ObjectCategories"
EXCLUDED = "BACKGROUND_Google"
SUFFIXES = (".jpg", ".jpeg")
URL = "https://data.caltech.edu/records/mzrjq-6wc02"
DEFAULT_SIZE = 64
# DFAD's dataloader.py: Normalize((0.5,), (0.5,)) on every channel.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def decode_image(path: Path, size: int) -> Tensor:
    """float32 (3, size, size) RGB pixels in [0, 1] of a JPEG (grey ones are converted to RGB):
    the shorter side resized to ``size`` with PIL's antialiased bilinear filter (the longer one
    in proportion, rounded down, as torchvision's ``Resize(size)``), then the centre square
    (``CenterCrop(size)``: its offset rounded)."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            w, h = rgb.size
            short, long = min(w, h), max(w, h)
            resized = (size, max(size, long * size // short))
            rgb = rgb.resize(resized if w <= h else resized[::-1], Image.Resampling.BILINEAR)
    except (OSError, ValueError) as e:
        raise DataError(f"caltech101: cannot decode {path}: {e}") from e
    w, h = rgb.size
    left, top = round((w - size) / 2), round((h - size) / 2)
    pixels = np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


class Caltech101(Dataset):
    """Images decoded on access; item i is (float32 (3, S, S) normalised image, int64 label)."""

    def __init__(self, paths: list[Path], labels: Tensor, info: DatasetInfo):
        self.paths = paths
        self.labels = labels  # int64 (N,)
        self.info = info

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = decode_image(self.paths[index], self.info.image_size)
        return normalise(image, self.info.mean, self.info.std), self.labels[index]


def _find_folder(root: Path) -> Path:
    """``root/101_ObjectCategories``, or ``root`` itself when it is that folder."""
    for folder in (root / FOLDER, root):
        if folder.name == FOLDER and folder.is_dir():
            return folder
    raise DataError(
        f"caltech101: expected {root}/{FOLDER}/<class>/*.jpg (the {FOLDER} folder of {URL}), "
        f"or {root} being that folder; {root} has no such folder"
    )


def _entries(folder: Path) -> list[Path]:
    """What ``folder`` holds; an unreadable folder is a DataError."""
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise DataError(f"caltech101: cannot list {folder}: {e.strerror}") from None


def _list_images(folder: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Sorted image paths, their int64 labels and the sorted class names of the tree."""
    classes = sorted(d.name for d in _entries(folder) if d.is_dir() and d.name != EXCLUDED)
    if not classes:
        raise DataError(f"caltech101: {folder} has no class subfolders, expected <class>/*.jpg")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        images = sorted(p for p in _entries(folder / cls) if p.suffix.lower() in (".jpg", ".jpeg"))
        if not images:
            raise DataError(f"caltech101: class folder {folder / cls} has no .jpg images")
        paths += images
        labels += [label] * len(images)
    return paths, np.array(labels, dtype=np.int64), classes


def load(
    root: Path, image_size: int, split_seed: int
) -> tuple[Caltech101, Caltech101, DatasetInfo]:
    """(train, test, info) of Caltech-101; no image is decoded until it is accessed."""
    paths, labels, classes = _list_images(_find_folder(root))
    info = DatasetInfo("caltech101", len(classes), 3, image_size, MEAN, STD, hflip=True)
    label_t = torch.from_numpy(labels)
    train_idx, test_idx = stratified_split(labels, split_seed)
    train = Caltech101([paths[i] for i in train_idx], label_t[train_idx], info)
    test = Caltech101([paths[i] for i in test_idx], label_t[test_idx], info)
    return train, test, info
