"""Batches of (images, labels) on a device, from in-memory tensors or a lazy Dataset."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    device: torch.device | str,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (images (B, C, H, W), int64 labels (B,) or (B, H, W)) on ``device``; the last batch
    may be smaller. Labels stored narrower (the uint8 maps of CamVid and NYUv2) are widened on the
    device, after the copy.

    A TensorDataset is sliced directly (no per-item Python work); any other Dataset goes through a
    DataLoader. ``generator`` (a CPU torch.Generator) makes the shuffle reproducible.
    """
    if isinstance(dataset, TensorDataset):
        images, labels = dataset.tensors
        n = len(labels)
        order = torch.randperm(n, generator=generator) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                x, y = images[start : start + batch_size], labels[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                x, y = images[idx], labels[idx]
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True).long()
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True).long()


@torch.no_grad()
def accuracy(
    model: torch.nn.Module, dataset: Dataset, device: torch.device | str, batch_size: int = 512
) -> float:
    """Top-1 accuracy in percent of ``model`` (put in eval mode, restored after) on ``dataset``."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    for x, y in iterate_batches(dataset, batch_size, device):
        correct += (model(x).argmax(dim=1) == y).sum()
        total += len(y)
    model.train(was_training)
    return 100.0 * correct.item() / max(total, 1)
