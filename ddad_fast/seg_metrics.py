"""Segmentation scores from a confusion matrix: per-class IoU, mean IoU, pixel accuracy.

Pixels labelled ``ignore_index`` count nowhere. A class that appears neither in the labels nor in
the predictions has no IoU (NaN) and is left out of the mean; the mean is over the other classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .batching import iterate_batches


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """int64 (K, K) counts: entry [i, j] is the number of pixels of true class i predicted as j.

    pred, target: integer tensors of the same shape (e.g. (N, H, W)); target pixels equal to
    ``ignore_index`` are skipped; other target values must lie in [0, K), predictions too.
    """
    keep = target != ignore_index
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes**2).view(num_classes, num_classes)


@dataclass(frozen=True)
class SegScores:
    """Scores of one model on one split, fractions in [0, 1] (per-class NaN: class absent)."""

    miou: float
    per_class_iou: tuple[float, ...]
    pixel_acc: float


def scores_from_confusion(conf: Tensor) -> SegScores:
    """IoU_k = C[k,k] / (row_k + col_k - C[k,k]); mIoU = mean over classes with a non-zero
    union; pixel accuracy = trace / total (NaN when every pixel was ignored)."""
    conf = conf.double()
    hits = conf.diag()
    union = conf.sum(dim=0) + conf.sum(dim=1) - hits
    iou = torch.where(union > 0, hits / union.clamp_min(1), torch.full_like(hits, math.nan))
    present = ~iou.isnan()
    miou = iou[present].mean().item() if present.any() else math.nan
    total = conf.sum().item()
    return SegScores(miou, tuple(iou.tolist()), hits.sum().item() / total if total else math.nan)


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str,
    num_classes: int,
    ignore_index: int,
    batch_size: int = 64,
) -> SegScores:
    """Scores of ``model`` (put in eval mode, restored after) over a dataset of (image (C, H, W),
    label map (H, W)) pairs, accumulated in one confusion matrix over all pixels."""
    was_training = model.training
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    for x, y in iterate_batches(dataset, batch_size, device):
        conf += confusion_matrix(model(x).argmax(dim=1), y, num_classes, ignore_index)
    model.train(was_training)
    return scores_from_confusion(conf.cpu())
