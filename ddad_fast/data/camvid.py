"""CamVid in the SegNet layout: 11 classes, void (11) ignored.

Under the root: ``train/``, ``trainannot/``, ``test/``, ``testannot/`` (``val/``, ``valannot/`` may
be there too and are not read), each image ``<split>/<name>.png`` beside its label map
``<split>annot/<name>.png`` holding class indices 0..10 and 11 for void. Images and labels are
resized as DFAD does (``seg_folders``): shorter side 256, so the published 480x360 frames become
341x256; teachers train on random ``image_size`` crops of them (DFAD: 128) and are scored on the
whole resized test frames.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import TensorDataset

from .common import DatasetInfo
from .seg_folders import load_rgb_splits

NUM_CLASSES = 11
VOID = 11
DEFAULT_SIZE = 128
SPLIT_DIRS = {"train": ("train", "trainannot"), "test": ("test", "testannot")}


def load(root: Path, image_size: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of CamVid under ``root``; items are (image (3, H, W), labels (H, W))
    with the shorter of H, W equal to 256; ``image_size`` is the train crop's side."""
    layout = "{train,trainannot,test,testannot}/*.png (the SegNet layout)"
    return load_rgb_splits("camvid", root, SPLIT_DIRS, layout, image_size, NUM_CLASSES, VOID)
