"""Segmentation pairs from two folders of PNGs: images and same-named label maps.

Shared by the CamVid and NYUv2 loaders. Images are decoded to RGB and resized (bilinear) to
``size`` x ``size``; label maps, whose pixel values are class indices, are resized with nearest
neighbour so no new values appear. Everything is held in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import TensorDataset

from .common import DataError, DatasetInfo, normalise

IGNORE = 255  # the label value no loss or score counts


def _decode(path: Path, name: str, size: int, label: bool) -> np.ndarray:
    """uint8 (size, size, 3) RGB pixels, or int64 (size, size) label values, of one PNG."""
    try:
        with Image.open(path) as img:
            mode = img.mode
            if label:
                array = np.asarray(img.resize((size, size), Image.Resampling.NEAREST))
            else:
                rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                array = np.asarray(rgb)
    except (OSError, ValueError) as e:
        raise DataError(f"{name}: cannot decode {path}: {e}") from e
    if label and array.ndim != 2:
        raise DataError(
            f"{name}: label map {path} has mode {mode}; expected one channel of class indices "
            "(mode L or P)"
        )
    return array.astype(np.int64) if label else array


def load_pairs(
    name: str, image_dir: Path, label_dir: Path, size: int, num_classes: int, void: int | None
) -> tuple[Tensor, Tensor]:
    """float32 (N, 3, size, size) pixels in [0, 1] and int64 (N, size, size) label maps.

    Every ``image_dir/*.png`` needs ``label_dir/<same name>``. Label values must be in
    [0, num_classes) or equal ``void`` or 255; both become 255 (ignored). Raises DataError naming
    the file otherwise.
    """
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise DataError(f"{name}: {image_dir} has no .png images")
    pixels, maps = [], []
    for path in images:
        label_path = label_dir / path.name
        if not label_path.is_file():
            raise DataError(f"{name}: image {path} has no label map {label_path}")
        labels = _decode(label_path, name, size, label=True)
        if void is not None:
            labels[labels == void] = IGNORE
        bad = labels[(labels >= num_classes) & (labels != IGNORE)]
        if bad.size:
            allowed = f"0..{num_classes - 1}" + (f", {void} (void)" if void is not None else "")
            raise DataError(
                f"{name}: label map {label_path} has value {int(bad.max())}; expected {allowed} "
                f"or {IGNORE} (ignored)"
            )
        pixels.append(_decode(path, name, size, label=False))
        maps.append(labels)
    images_t = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
    return images_t.contiguous(), torch.from_numpy(np.stack(maps))


# ImageNet's per-channel statistics. DFAD's own loaders normalise CamVid and NYUv2 with mean 0.5,
# std 0.5 instead, so a DFAD segmentation teacher expects other inputs than these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_rgb_splits(
    name: str,
    root: Path,
    split_dirs: dict[str, tuple[str, str]],
    layout: str,
    image_size: int,
    num_classes: int,
    void: int | None,
) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of an RGB segmentation dataset of PNG pairs under ``root``.

    ``split_dirs``: for "train" and "test", the (image folder, label folder) relative to root.
    Items are (image (3, S, S) normalised by ImageNet's statistics, labels (S, S)). A missing
    folder is a DataError quoting ``layout`` (the layout the dataset expects).
    """
    folders = [d for pair in split_dirs.values() for d in pair]
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise DataError(f"{name}: expected {root}/{layout}; {root} has no {', '.join(missing)}")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    info = DatasetInfo(name, num_classes, 3, image_size, mean, std, hflip=True, ignore_index=IGNORE)
    splits = []
    for split in ("train", "test"):
        image_dir, label_dir = split_dirs[split]
        pixels, labels = load_pairs(
            name, root / image_dir, root / label_dir, image_size, num_classes, void
        )
        splits.append(TensorDataset(normalise(pixels, mean, std), labels))
    return splits[0], splits[1], info
