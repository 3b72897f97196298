"""The two PNGs a distillation run leaves in its folder: ``samples.png`` (64 of the generator's
images) and ``curves.png`` (scores and losses per epoch), written at the end of ``ddad distill``
and ``ddad demo`` (``write_run_plots``), or later from the folder's files (``plot_run_folder``,
``ddad plot DIR``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import load_checkpoint, load_state_strict
from .errors import CheckpointError
from .metrics import read_metrics
from .plots import plot_distill_curves, save_image_grid
from .run_state import DISTILL_KIND
from .tasks import get_task


def write_run_plots(
    out_dir: str | Path,
    generator: nn.Module,
    z: Tensor,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
) -> list[Path]:
    """samples.png: the images ``generator(z)`` (z: (n, nz), the first 64 drawn), normalisation
    undone with ``mean``/``std`` (without them each grid is scaled to its own range);
    curves.png: from the folder's metrics.csv. Returns the two paths."""
    out = Path(out_dir)
    with torch.no_grad():
        samples = generator(z[:64])
    paths = [out / "samples.png", out / "curves.png"]
    save_image_grid(samples, paths[0], mean, std)
    plot_distill_curves(out / "metrics.csv", paths[1])
    return paths


def plot_run_folder(run_dir: str | Path) -> list[Path]:
    """Redraw samples.png and curves.png of the distillation run in ``run_dir`` from its last.pt
    (the generator, rebuilt from the run's settings) and metrics.csv; returns the two paths."""
    run = Path(run_dir)
    last = run / "last.pt"
    ckpt = load_checkpoint(last)
    if ckpt.get("kind") != DISTILL_KIND:
        raise CheckpointError(f"{last} is not a ddad_fast distillation checkpoint")
    cfg, record = ckpt["config"], ckpt["model"]
    generator = get_task(cfg["task"]).make_generator(
        cfg["nz"],
        cfg["ngf"],
        record["in_channels"],
        record["image_size"],
        cfg.get("seg_generator_bn", False),
    )
    load_state_strict(generator, ckpt["generator"], last)
    metrics = run / "metrics.csv"
    try:  # before either picture is redrawn
        read_metrics(metrics)
    except (OSError, ValueError) as e:
        raise CheckpointError(
            f"cannot read {metrics}, which the curves are drawn from: {e}"
        ) from None
    z = torch.randn(64, cfg["nz"], generator=torch.Generator().manual_seed(cfg["seed"]))
    return write_run_plots(run, generator, z)
