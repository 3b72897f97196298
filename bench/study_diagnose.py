"""What a finished data-free run's generator makes, and where its student gains or loses.

    python bench/study_diagnose.py runs/study/fashion-mnist/{ddad,bn-only}/seed0

For each run folder (a DDADTrainer ``out_dir`` with ``last.pt``): draws 1024 images from its final
generator (fixed noise, in training mode as during distillation, the run's batch size) and prints a
Markdown table of the share of them the teacher puts in each class, the teacher's mean top-1
probability on them, how often teacher and student agree on them, and the student's and the
teacher's accuracy per class on the real test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ddad_fast.batching import iterate_batches
from ddad_fast.builder import build_trainer
from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.distill_config import DistillConfig
from ddad_fast.run_state import load_run_state
from ddad_fast.trainer import DDADTrainer

SAMPLES = 1024


@torch.no_grad()
def predictions(model: nn.Module, dataset: Dataset) -> tuple[Tensor, Tensor]:
    """(predicted classes (N,), labels (N,)) of ``model`` in eval mode on ``dataset``."""
    model.eval()
    pairs = [(model(x).argmax(dim=1), y) for x, y in iterate_batches(dataset, 1000, "cpu")]
    return torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])


def accuracy_cells(model: nn.Module, dataset: Dataset, num_classes: int) -> str:
    """``| acc class 0 | ... | acc class K-1 | overall``: test accuracies in percent."""
    predicted, labels = predictions(model, dataset)
    per_class = [(predicted[labels == c] == c).float().mean().item() for c in range(num_classes)]
    overall = (predicted == labels).float().mean().item()
    return " | ".join(f"{100 * a:.0f}" for a in per_class) + f" | {100 * overall:.2f} overall"


def restore_run(run: Path) -> DDADTrainer:
    """The run's trainer rebuilt from its saved config, on the CPU, with its final student and
    generator loaded from ``run/last.pt``."""
    saved = load_checkpoint(run / "last.pt")["config"]
    known = {f.name for f in dataclasses.fields(DistillConfig)}
    cfg = DistillConfig(**{k: v for k, v in saved.items() if k in known})
    trainer = build_trainer(dataclasses.replace(cfg, device="cpu", progress=False))
    if trainer.task.dense:
        raise SystemExit(f"study_diagnose: {run} is a segmentation run; it reads classifiers")
    load_run_state(trainer, run / "last.pt")
    return trainer


@torch.no_grad()
def generated_rows(run: Path, trainer: DDADTrainer) -> list[str]:
    """The rows of one run: what its final generator makes (SAMPLES images, fixed noise, the
    generator in training mode as during distillation) and its student's test accuracies."""
    batches = torch.randn(SAMPLES, trainer.cfg.nz, generator=torch.Generator().manual_seed(0))
    images = torch.cat([trainer.generator(z) for z in batches.split(trainer.cfg.batch_size)])
    t_logits = trainer.teacher(images)
    s_logits = trainer.student.eval()(images)
    k = trainer.info.num_classes
    share = torch.bincount(t_logits.argmax(dim=1), minlength=k).float() * 100 / SAMPLES
    confidence = t_logits.softmax(dim=1).amax(dim=1).mean().item()
    agree = (t_logits.argmax(dim=1) == s_logits.argmax(dim=1)).float().mean().item()
    return [
        f"| {run} generated, % per teacher class | "
        + " | ".join(f"{v:.0f}" for v in share.tolist())
        + f" | T top-1 p {confidence:.2f}, T=S {100 * agree:.0f}% |",
        f"| {run} student test acc % per class | "
        f"{accuracy_cells(trainer.student, trainer.test_set, k)} |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="DDADTrainer out_dir folders")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    missing = [str(r) for r in args.runs if not (r / "last.pt").is_file()]
    if missing:
        raise SystemExit(f"study_diagnose: no last.pt in {', '.join(missing)}")
    teachers_done = set()  # each teacher's row once, after its first run's rows
    for i, run in enumerate(args.runs):
        trainer = restore_run(run)
        k = trainer.info.num_classes
        if i == 0:
            print("| run | " + " | ".join(f"class {c}" for c in range(k)) + " | |")
            print("|---|" + "---:|" * k + "---|")
        print("\n".join(generated_rows(run, trainer)))
        if trainer.cfg.teacher_ckpt not in teachers_done:
            teachers_done.add(trainer.cfg.teacher_ckpt)
            cells = accuracy_cells(trainer.teacher, trainer.test_set, k)
            print(f"| teacher test acc % per class | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
