"""NYUv2 with the 13-class labels (Couprie et al. 2013), 255 ignored.

Under the root: ``image/train/*.png``, ``image/test/*.png`` (RGB) and ``seg13/train/*.png``,
``seg13/test/*.png`` (same names; one channel of class indices 0..12, 255 for unlabelled pixels).
Images and labels are resized to ``image_size`` x ``image_size`` (DFAD trains at 128x128).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import TensorDataset

from .common import DatasetInfo
from .seg_folders import load_rgb_splits

NUM_CLASSES = 13
DEFAULT_SIZE = 128
SPLIT_DIRS = {"train": ("image/train", "seg13/train"), "test": ("image/test", "seg13/test")}


def load(root: Path, image_size: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of NYUv2 under ``root``; items are (image (3, S, S), labels (S, S))."""
    layout = "{image,seg13}/{train,test}/*.png"
    return load_rgb_splits("nyuv2", root, SPLIT_DIRS, layout, image_size, NUM_CLASSES, None)
