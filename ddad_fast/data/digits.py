"""scikit-learn's bundled 8x8 handwritten digits (1797 images), split 80/20 by a seeded
stratified split."""

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .common import DatasetInfo, stratified_split, to_tensor_dataset

NATIVE_SIZE = 8
# Mean and std of all 1797 images scaled to [0, 1] (pixel / 16), computed once from
# sklearn.datasets.load_digits() (0.30526, 0.37605); fixed so every split normalises alike.
MEAN = (0.3053,)
STD = (0.3760,)


def load(image_size: int, split_seed: int) -> tuple[TensorDataset, TensorDataset, DatasetInfo]:
    """(train, test, info) of the digits; train has 1438 images, test 359 for every seed."""
    # Imported here: scikit-learn is slow to import and only this dataset needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images.astype(np.float32) / 16).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = (torch.from_numpy(i) for i in stratified_split(digits.target, split_seed))
    info = DatasetInfo("digits", 10, 1, image_size, MEAN, STD, hflip=False)
    train = to_tensor_dataset(pixels[train_idx], labels[train_idx], info)
    test = to_tensor_dataset(pixels[test_idx], labels[test_idx], info)
    return train, test, info
