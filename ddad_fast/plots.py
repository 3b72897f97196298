"""PNG outputs a person looks at: a grid of generated samples and the training curves."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from .metrics import read_metrics


def save_image_grid(
    images: Tensor, path: str | Path, mean: tuple[float, ...], std: tuple[float, ...], ncol: int = 8
) -> None:
    """Write normalised images (N, C, H, W), 1 or 3 channels, as one PNG grid of ``ncol`` columns.

    The normalisation is undone with ``mean``/``std`` and pixels are clipped to [0, 1].
    """
    images = images.detach().float().cpu()
    c = images.shape[1]
    pixels = images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    pixels = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    n = len(pixels)
    nrow = (n + ncol - 1) // ncol
    fig = Figure(figsize=(ncol, nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pixels[i, :, :, 0] if c == 1 else pixels[i], cmap="gray", vmin=0, vmax=1)
    fig.tight_layout(pad=0.1)
    fig.savefig(path, dpi=80)


def plot_distill_curves(metrics_csv: str | Path, path: str | Path) -> None:
    """Plot accuracy (student, teacher) and the losses per epoch of a distillation metrics CSV."""
    rows = read_metrics(metrics_csv)
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    ax_acc.plot(epochs, [r["student_acc"] for r in rows], label="student")
    ax_acc.plot(epochs, [r["teacher_acc"] for r in rows], "--", label="teacher")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="accuracy")
    ax_acc.legend()
    for key in ("loss_student", "l1_generator", "bn_loss"):
        ax_loss.plot(epochs, [r[key] for r in rows], label=key)
    ax_loss.set(xlabel="epoch", yscale="log", title="losses")
    ax_loss.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
