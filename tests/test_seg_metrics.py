"""Segmentation scores against a confusion matrix computed by hand, ignored pixels included."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ddad_fast.seg_metrics import confusion_matrix, evaluate_segmentation, scores_from_confusion

IGNORE = 255
# 2 images of 2x3 pixels, 4 classes. The (target, prediction) pairs, pixel by pixel:
# (0,0) (1,1) (255,3) | (2,2) (1,2) (0,0). The ignored pixel is predicted as class 3, which appears
# nowhere else: it must neither count in the matrix nor give class 3 an IoU of 0.
TARGET = torch.tensor([[[0, 1, IGNORE]], [[2, 1, 0]]]).view(2, 1, 3)
PRED = torch.tensor([[[0, 1, 3]], [[2, 2, 0]]]).view(2, 1, 3)
HAND_CONFUSION = [
    [2, 0, 0, 0],  # true 0: both predicted 0
    [0, 1, 1, 0],  # true 1: one predicted 1, one predicted 2
    [0, 0, 1, 0],  # true 2: predicted 2
    [0, 0, 0, 0],  # true 3: absent (the ignored pixel does not count)
]
# IoU_k = C[k,k] / (row_k + col_k - C[k,k]):
# class 0: 2 / (2 + 2 - 2) = 1; class 1: 1 / (2 + 1 - 1) = 1/2; class 2: 1 / (1 + 2 - 1) = 1/2;
# class 3: union 0, no IoU (NaN), left out. mIoU = (1 + 1/2 + 1/2) / 3 = 2/3.
# Pixel accuracy = (2 + 1 + 1) / 5 counted pixels = 4/5.


def test_confusion_matrix_matches_the_hand_count_and_skips_ignored_pixels():
    conf = confusion_matrix(PRED, TARGET, 4, IGNORE)
    assert conf.tolist() == HAND_CONFUSION
    assert conf.dtype == torch.int64


def test_scores_match_the_hand_computed_iou():
    scores = scores_from_confusion(torch.tensor(HAND_CONFUSION))
    assert scores.per_class_iou[:3] == pytest.approx((1.0, 0.5, 0.5))
    assert math.isnan(scores.per_class_iou[3])
    assert scores.miou == pytest.approx(2 / 3)
    assert scores.pixel_acc == pytest.approx(4 / 5)


def test_a_class_predicted_but_absent_from_the_labels_scores_zero():
    conf = confusion_matrix(torch.tensor([1, 1]), torch.tensor([0, 1]), 2, IGNORE)
    scores = scores_from_confusion(conf)  # class 0: 0 / (1 + 0 - 0) = 0; class 1: 1 / 2
    assert scores.per_class_iou == pytest.approx((0.0, 0.5))
    assert scores.miou == pytest.approx(0.25)


def test_all_pixels_ignored_gives_nan_scores():
    conf = confusion_matrix(torch.tensor([0, 1]), torch.tensor([IGNORE, IGNORE]), 2, IGNORE)
    scores = scores_from_confusion(conf)
    assert math.isnan(scores.miou) and math.isnan(scores.pixel_acc)


class _Echo(nn.Module):
    """A 'model' whose predicted class at each pixel is the image's value there."""

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 4).permute(0, 3, 1, 2).float()


def test_evaluate_segmentation_accumulates_one_matrix_over_batches():
    images = PRED[:, None].float()  # (2, 1, 1, 3): the prediction carried by the image
    dataset = TensorDataset(images, TARGET)
    scores = evaluate_segmentation(_Echo(), dataset, "cpu", 4, IGNORE, batch_size=1)
    assert scores.miou == pytest.approx(2 / 3)
    assert scores.pixel_acc == pytest.approx(4 / 5)
