"""PNG outputs a person looks at: a grid of generated samples, generated images beside predicted
label maps, and the training curves."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from .metrics import read_metrics


def save_image_grid(
    images: Tensor, path: str | Path, mean: tuple[float, ...], std: tuple[float, ...], ncol: int = 8
) -> None:
    """Write normalised images (N, C, H, W) as one PNG grid of ``ncol`` columns: 3 channels in
    colour, any other count as its first channel in grey.

    The normalisation is undone with ``mean``/``std`` and pixels are clipped to [0, 1]; without
    them (a run with no dataset), each grid is scaled from its own minimum to its maximum.
    """
    images = images.detach().float().cpu()
    c = images.shape[1]
    if mean and std:
        pixels = images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    else:
        pixels = (images - images.min()) / (images.max() - images.min()).clamp_min(1e-12)
    pixels = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    n = len(pixels)
    nrow = (n + ncol - 1) // ncol
    fig = Figure(figsize=(ncol, nrow))
    axes = fig.subplots(nrow, ncol, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pixels[i] if c == 3 else pixels[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
    fig.tight_layout(pad=0.1)
    fig.savefig(path, dpi=80)


def save_seg_panel(
    images: Tensor,
    maps: dict[str, Tensor],
    path: str | Path,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    num_classes: int,
) -> None:
    """One row per image: the image (N, C, H, W), normalised, then each named label map
    ``maps[title]`` (N, H, W) of class indices in [0, num_classes), one colour per class."""
    images = images.detach().float().cpu()
    pixels = images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    pixels = pixels.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    n, ncol = len(pixels), 1 + len(maps)
    fig = Figure(figsize=(1.6 * ncol, 1.6 * n))
    axes = fig.subplots(n, ncol, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(pixels[i, :, :, 0] if pixels.shape[-1] == 1 else pixels[i], cmap="gray")
        for j, labels in enumerate(maps.values(), start=1):
            axes[i, j].imshow(
                labels[i].cpu().numpy(),
                cmap="tab20",
                vmin=0,
                vmax=num_classes - 1,
                interpolation="nearest",
            )
    for j, title in enumerate(["generated", *maps]):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout(pad=0.1)
    fig.savefig(path, dpi=80)


def plot_distill_curves(metrics_csv: str | Path, path: str | Path) -> None:
    """Plot the score (student, teacher) and the losses per epoch of a distillation metrics CSV;
    the score is accuracy (``student_acc``) or mean IoU (``student_miou``), and a run that was not
    evaluated gets its losses alone."""
    rows = read_metrics(metrics_csv)
    epochs = [r["epoch"] for r in rows]
    score = next((s for s in ("acc", "miou") if rows and f"student_{s}" in rows[0]), None)
    fig = Figure(figsize=(10, 4) if score else (5, 4))
    *ax_score, ax_loss = fig.subplots(1, 2 if score else 1, squeeze=False).flat
    if score:
        ax = ax_score[0]
        ax.plot(epochs, [r[f"student_{score}"] for r in rows], label="student")
        ax.plot(epochs, [r[f"teacher_{score}"] for r in rows], "--", label="teacher")
        title = {"acc": "accuracy", "miou": "mean IoU"}[score]
        ax.set(xlabel="epoch", ylabel=f"test {title} (%)", title=title)
        ax.legend()
    for key in ("loss_student", "l1_generator", "bn_loss"):
        ax_loss.plot(epochs, [r[key] for r in rows], label=key)
    ax_loss.set(xlabel="epoch", yscale="log", title="losses")
    ax_loss.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
