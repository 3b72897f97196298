"""How far the seg demo's student gets on the REAL canvases, by the loss DDAD gives it.

    python bench/seg_student_ceiling.py --teacher runs/demo-seg/teacher/teacher.pt \
        --loss l1-centred --optimizer adam --lr 3e-3 --steps 1200

Trains ``deeplabv3_mobilenetv2_small`` on random batches of the real composite-digits training
canvases with one of: cross-entropy on the labels (``ce``), L1 to the teacher's logit maps
(``l1``, DDAD's student loss), or L1 between the logits less each pixel's mean over the classes
(``l1-centred``, ``--center-logits``). The optimiser, learning rate, batch and cosine schedule over
``--steps`` are the demo's; the mean IoU on the real test canvases is printed every
``--eval-every`` steps. What the data-free student reaches with the same loss and steps, it
reaches on images the generator made instead of these: the gap between the two is the
generator's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddad_fast.data import load_dataset  # noqa: E402
from ddad_fast.losses import logit_discrepancy  # noqa: E402
from ddad_fast.model_io import load_model  # noqa: E402
from ddad_fast.models import build_model  # noqa: E402
from ddad_fast.optimizers import OPTIMIZERS, make_optimizer  # noqa: E402
from ddad_fast.seg_metrics import evaluate_segmentation  # noqa: E402

LOSSES = ("ce", "l1", "l1-centred")
STUDENT = "deeplabv3_mobilenetv2_small"
DATASET = "composite-digits"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=Path("runs/demo-seg/teacher/teacher.pt"))
    parser.add_argument("--loss", choices=LOSSES, default="l1-centred")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def student_loss(
    loss: str, logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor | None
) -> torch.Tensor:
    """The student's loss on one batch: logit maps (N, K, H, W), label maps (N, H, W)."""
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    return logit_discrepancy(teacher_logits, logits, center=loss == "l1-centred")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    train, test, info = load_dataset(DATASET)
    teacher, _ = load_model(args.teacher, None, info.num_classes, info.in_channels, task="seg")
    teacher.eval().requires_grad_(False)
    student = build_model(STUDENT, info.num_classes, info.in_channels, info.image_size)
    # Adam without weight decay as in the seg demo; SGD with the DFAD protocol's momentum and decay
    decay = 0.0 if args.optimizer == "adam" else 5e-4
    opt = make_optimizer(args.optimizer, student.parameters(), args.lr, 0.9, decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    images, labels = train.tensors
    draw = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    print(f"{STUDENT} on real {DATASET}: loss {args.loss}, {args.optimizer} lr {args.lr}")
    print("| step | mIoU % | seconds |\n|---:|---:|---:|")
    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(images), (args.batch_size,), generator=draw)
        x = images[idx]
        with torch.no_grad():
            teacher_logits = None if args.loss == "ce" else teacher(x)
        loss = student_loss(args.loss, student(x), labels[idx], teacher_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate_segmentation(
                student, test, "cpu", info.num_classes, info.ignore_index
            )
            print(f"| {step} | {100 * scores.miou:.2f} | {time.perf_counter() - start:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
