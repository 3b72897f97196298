"""CamVid in the SegNet layout: 11 classes, void (11) ignored.

Under the root: ``train/``, ``trainannot/``, ``test/``, ``testannot/`` (``val/``, ``valannot/`` may
be there too and are not read), each image ``<split>/<name>.png`` beside its label map
``<split>annot/<name>.png`` holding class indices 0..10 and 11 for void. Images and labels are
resized to ``image_size`` x ``image_size`` (DFAD trains at 128x128).
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import TensorDataset

from .common import DataError, DatasetInfo, normalise
from .seg_folders import IGNORE, load_pairs

NUM_CLASSES = 11
VOID = 11
DEFAULT_SIZE = 128
FOLDERS = ("train", "trainannot", "test", "testannot")
# ImageNet's per-channel statistics, as DFAD normalises CamVid.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def load(root: Path, image_size: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of CamVid under ``root``; items are (image (3, S, S), labels (S, S))."""
    missing = [f for f in FOLDERS if not (root / f).is_dir()]
    if missing:
        raise DataError(
            f"camvid: expected {root}/{{{','.join(FOLDERS)}}}/*.png (the SegNet layout); "
            f"{root} has no {', '.join(missing)}"
        )
    info = DatasetInfo(
        "camvid", NUM_CLASSES, 3, image_size, MEAN, STD, hflip=True, ignore_index=IGNORE
    )
    splits = []
    for split in ("train", "test"):
        pixels, labels = load_pairs(
            "camvid", root / split, root / f"{split}annot", image_size, NUM_CLASSES, VOID
        )
        splits.append(TensorDataset(normalise(pixels, MEAN, STD), labels))
    return splits[0], splits[1], info
