"""NYUv2 with the 13-class labels (Couprie et al. 2013), 255 ignored.

Under the root: ``image/train/*.png``, ``image/test/*.png`` (RGB) and ``seg13/train/*.png``,
``seg13/test/*.png`` (same names; one channel of class indices 0..12, 255 for unlabelled pixels).
Images and labels are resized as DFAD does (``seg_folders``): shorter side 256, so the
published 640x480 frames become 341x256; teachers train on random ``image_size`` crops of them
(DFAD: 128) and are scored on the whole resized test frames.
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
    """(train, test, info) of NYUv2 under ``root``; items are (image (3, H, W), labels (H, W))
    with the shorter of H, W equal to 256; ``image_size`` is the train crop's side."""
    layout = "{image,seg13}/{train,test}/*.png"
    return load_rgb_splits("nyuv2", root, SPLIT_DIRS, layout, image_size, NUM_CLASSES, None)
