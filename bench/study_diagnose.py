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
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ddad_fast.batching import iterate_batches
from ddad_fast.checkpoint import load_checkpoint
from ddad_fast.data import DatasetInfo, load_dataset
from ddad_fast.model_io import load_model
from ddad_fast.models import Generator

SAMPLES = 1024


@torch.no_grad()
def predictions(model: nn.Module, dataset: Dataset) -> tuple[Tensor, Tensor]:
    """(predicted classes (N,), labels (N,)) of ``model`` in eval mode on ``dataset``."""
    model.eval()
    pairs = [(model(x).argmax(dim=1), y) for x, y in iterate_batches(dataset, 1000, "cpu")]
    return torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])


def per_class_accuracy(predicted: Tensor, labels: Tensor, num_classes: int) -> list[float]:
    """Accuracy in percent of each class c over the samples labelled c."""
    return [100.0 * (predicted[labels == c] == c).float().mean().item() for c in range(num_classes)]


@torch.no_grad()
def generated_logits(ckpt: dict, teacher: nn.Module, student: nn.Module, info: DatasetInfo):
    """(teacher, student) logits (SAMPLES, K) on images from the run's final generator."""
    cfg = ckpt["config"]
    generator = Generator(cfg["nz"], cfg["ngf"], info.in_channels, info.image_size)
    generator.load_state_dict(ckpt["generator"])
    generator.train()  # its BatchNorms use batch statistics, as during distillation
    noise = torch.randn(SAMPLES, cfg["nz"], generator=torch.Generator().manual_seed(0))
    images = torch.cat([generator(z) for z in noise.split(cfg["batch_size"])])
    return teacher.eval()(images), student.eval()(images)


def diagnose(run: Path) -> list[str]:
    """The Markdown rows of one run folder."""
    ckpt = load_checkpoint(run / "last.pt")
    cfg = ckpt["config"]
    _, test_set, info = load_dataset(cfg["dataset"], cfg["data_root"], cfg["image_size"])
    k = info.num_classes
    shape = (k, info.in_channels, info.image_size)
    teacher, _ = load_model(cfg["teacher_ckpt"], cfg["teacher"], *shape)
    student, _ = load_model(run / "last.pt", cfg["student"], *shape)
    t_logits, s_logits = generated_logits(ckpt, teacher, student, info)
    share = torch.bincount(t_logits.argmax(dim=1), minlength=k).float() * 100 / SAMPLES
    confidence = t_logits.softmax(dim=1).amax(dim=1).mean().item()
    agree = (t_logits.argmax(dim=1) == s_logits.argmax(dim=1)).float().mean().item()
    student_pred, labels = predictions(student, test_set)
    teacher_pred, _ = predictions(teacher, test_set)
    acc = 100.0 * (student_pred == labels).float().mean().item()

    def cells(values) -> str:
        return " | ".join(f"{v:.0f}" for v in values)

    return [
        f"| {run} generated, % per teacher class | {cells(share.tolist())} | "
        f"T top-1 p {confidence:.2f}, T=S {100 * agree:.0f}% |",
        f"| {run} student test acc % per class | "
        f"{cells(per_class_accuracy(student_pred, labels, k))} | {acc:.2f} overall |",
        f"| teacher test acc % per class | {cells(per_class_accuracy(teacher_pred, labels, k))} "
        f"| {100.0 * (teacher_pred == labels).float().mean().item():.2f} overall |",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="DDADTrainer out_dir folders")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    missing = [str(r) for r in args.runs if not (r / "last.pt").is_file()]
    if missing:
        raise SystemExit(f"study_diagnose: no last.pt in {', '.join(missing)}")
    rows = [row for run in args.runs for row in diagnose(run)]
    k = rows[0].count("|") - 3
    print("| run | " + " | ".join(f"class {c}" for c in range(k)) + " | |")
    print("|---|" + "---:|" * k + "---|")
    print("\n".join(dict.fromkeys(rows)))  # the teacher's row once per teacher
    return 0


if __name__ == "__main__":
    sys.exit(main())
