"""NYUv2 with the 13-class labels (Couprie et al. 2013), 255 ignored.

Under the root: ``image/train/*.png``, ``image/test/*.png`` (RGB) and ``seg13/train/*.png``,
``seg13/test/*.png`` (same names; one channel of class indices 0..12, 255 for unlabelled pixels).
Images and labels are resized to ``image_size`` x ``image_size`` (DFAD trains at 128x128).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import TensorDataset

from .common import DataError, DatasetInfo, normalise
from .seg_folders import IGNORE, load_pairs

NUM_CLASSES = 13
DEFAULT_SIZE = 128
FOLDERS = ("image/train", "image/test", "seg13/train", "seg13/test")
# ImageNet's per-channel statistics, as DFAD normalises NYUv2.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load(root: Path, image_size: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of NYUv2 under ``root``; items are (image (3, S, S), labels (S, S))."""
    missing = [f for f in FOLDERS if not (root / f).is_dir()]
    if missing:
        raise DataError(
            f"nyuv2: expected {root}/{{image,seg13}}/{{train,test}}/*.png; {root} has no "
            f"{', '.join(missing)}"
        )
    info = DatasetInfo(
        "nyuv2", NUM_CLASSES, 3, image_size, MEAN, STD, hflip=True, ignore_index=IGNORE
    )
    splits = []
    for split in ("train", "test"):
        pixels, labels = load_pairs(
            "nyuv2", root / "image" / split, root / "seg13" / split, image_size, NUM_CLASSES, None
        )
        splits.append(TensorDataset(normalise(pixels, MEAN, STD), labels))
    return splits[0], splits[1], info
