"""Segmentation pairs from two folders of PNGs: images and same-named label maps, in DFAD's scale.

Shared by the CamVid and NYUv2 loaders. As DFAD's ``ExtResize(256)``, every image of both splits
is resized so that its shorter side is ``RESIZE_EDGE`` and its aspect kept (bilinear, PIL's);
label maps, whose pixel values are class indices, with nearest neighbour so no new values appear.
Pixels are normalised with mean 0.5 and std 0.5 per channel (values in [-1, 1]), as DFAD's
``ExtNormalize((0.5,), (0.5,))``. Train images stay whole: the random ``image_size`` crop and
flip are drawn per sample and batch by ``augment.seg_augment``; test images are scored whole.

Each split is one tensor, so all of its images must have the same size once resized: a published
split does (CamVid's are all 480x360 -> 341x256, NYUv2's 640x480 -> 341x256), batches slice it
without per-item work, and a folder of mixed sizes is refused with one line naming the file,
rather than scored with a padding or a per-image loop that would change what mIoU measures.
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
RESIZE_EDGE = 256  # the shorter side of every image, train and test (DFAD's ExtResize(256))
MEAN = (0.5, 0.5, 0.5)  # DFAD's ExtNormalize((0.5,), (0.5,)), applied to all three channels
STD = (0.5, 0.5, 0.5)


def resized_size(width: int, height: int, edge: int) -> tuple[int, int]:
    """(width, height) with the shorter side scaled to ``edge`` and the longer one to
    ``floor(edge * longer / shorter)``: torchvision's ``Resize(int)`` rule, which DFAD's
    ``ExtResize`` applies. A square image becomes ``edge`` x ``edge``."""
    if width <= height:
        return edge, edge * height // width
    return edge * width // height, edge


def _decode(path: Path, name: str, label: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """The PNG's pixels resized to ``resized_size`` of ``RESIZE_EDGE`` and its own
    (width, height). Pixels: uint8 (h, w, 3) RGB (bilinear), or int64 (h, w) label values
    (nearest neighbour)."""
    try:
        with Image.open(path) as img:
            mode, size = img.mode, img.size
            target = resized_size(*size, RESIZE_EDGE)
            if label:
                array = np.asarray(img.resize(target, Image.Resampling.NEAREST))
            else:
                rgb = img.convert("RGB").resize(target, Image.Resampling.BILINEAR)
                array = np.asarray(rgb)
    except (OSError, ValueError) as e:
        raise DataError(f"{name}: cannot decode {path}: {e}") from e
    if label and array.ndim != 2:
        raise DataError(
            f"{name}: label map {path} has mode {mode}; expected one channel of class indices "
            "(mode L or P)"
        )
    return (array.astype(np.int64) if label else array), size


def load_pairs(
    name: str, image_dir: Path, label_dir: Path, num_classes: int, void: int | None
) -> tuple[Tensor, Tensor]:
    """float32 (N, 3, H, W) pixels in [0, 1] and uint8 (N, H, W) label maps (an eighth of int64's
    memory: NYUv2's splits would hold 1 GB of int64 labels; batches widen them), resized to a
    shorter side of ``RESIZE_EDGE``.

    Every ``image_dir/*.png`` needs ``label_dir/<same name>`` of the same size. Label values must
    be in [0, num_classes) or equal ``void`` or 255; both become 255 (ignored). All images must
    resize to one (H, W). Raises DataError naming the file otherwise.
    """
    images = sorted(image_dir.glob("*.png"))
    if not images:
        raise DataError(f"{name}: {image_dir} has no .png images")
    pixels, maps = [], []
    for path in images:
        label_path = label_dir / path.name
        if not label_path.is_file():
            raise DataError(f"{name}: image {path} has no label map {label_path}")
        labels, label_size = _decode(label_path, name, label=True)
        if void is not None:
            labels[labels == void] = IGNORE
        bad = labels[(labels >= num_classes) & (labels != IGNORE)]  # PNG samples are unsigned
        if bad.size:
            allowed = f"0..{num_classes - 1}" + (f", {void} (void)" if void is not None else "")
            raise DataError(
                f"{name}: label map {label_path} has value {int(bad.max())}; expected {allowed} "
                f"or {IGNORE} (ignored)"
            )
        rgb, size = _decode(path, name, label=False)
        if label_size != size:
            raise DataError(
                f"{name}: label map {label_path} is {label_size[0]}x{label_size[1]} but its image "
                f"is {size[0]}x{size[1]}"
            )
        if pixels and rgb.shape != pixels[0].shape:
            have, first = rgb.shape[1::-1], pixels[0].shape[1::-1]
            raise DataError(
                f"{name}: image {path} resizes to {have[0]}x{have[1]} but {images[0]} to "
                f"{first[0]}x{first[1]}; every image of a split must resize to one size"
            )
        pixels.append(rgb)
        maps.append(labels.astype(np.uint8))  # every value is < num_classes or IGNORE (255)
    images_t = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
    return images_t.contiguous(), torch.from_numpy(np.stack(maps))


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
    Items are (image (3, H, W) normalised to [-1, 1], uint8 labels (H, W)) with the shorter of H, W
    equal to ``RESIZE_EDGE``; ``image_size`` (``info.image_size``) is the side of the square
    train crop. A missing folder is a DataError quoting ``layout`` (the layout the dataset
    expects).
    """
    folders = [d for pair in split_dirs.values() for d in pair]
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        raise DataError(f"{name}: expected {root}/{layout}; {root} has no {', '.join(missing)}")
    info = DatasetInfo(name, num_classes, 3, image_size, MEAN, STD, hflip=True, ignore_index=IGNORE)
    splits = []
    for split in ("train", "test"):
        image_dir, label_dir = split_dirs[split]
        pixels, labels = load_pairs(name, root / image_dir, root / label_dir, num_classes, void)
        splits.append(TensorDataset(normalise(pixels, MEAN, STD), labels))
    return splits[0], splits[1], info
