"""``ddad demo --task seg``: data-free distillation of a segmentation model on the embedded default.

A small DeepLabV3-ResNet teacher is trained on the composite canvases of real digits
(``data/composite.py``: 2-3 real items pasted on a 32x32 canvas, per-pixel label item class + 1 on
ink, 0 elsewhere), or reused from the cache; a smaller DeepLabV3-MobileNetV2 student is distilled
from it with DDAD from noise alone (DFAD's segmentation form: the generator maximises
``log(1 + L1)`` of the logit maps); both are scored by mean IoU on the held-out canvases, whose
items were never in the training canvases.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from .demo import distill_with_cached_teacher
from .distill_config import DistillConfig
from .plots import plot_distill_curves, save_seg_panel
from .teacher import TeacherConfig

DEMO_SEG_TEACHER = TeacherConfig(
    task="seg",
    model="deeplabv3_resnet_small",
    dataset="composite-digits",
    epochs=6,
    batch_size=64,
    optimizer="adam",
    lr=3e-3,
    weight_decay=1e-4,
    schedule="cosine",
)

DEMO_SEG_DISTILL = DistillConfig(
    task="seg",
    student="deeplabv3_mobilenetv2_small",
    dataset="composite-digits",
    epochs=12,
    epoch_iters=20,
    student_steps=5,
    batch_size=32,
    nz=64,
    ngf=16,
    student_optimizer="adam",  # L1 on logit maps learns much faster with Adam than SGD here
    lr_student=3e-3,
    weight_decay=0.0,
    center_logits=True,  # the logits less each pixel's mean over classes (what softmax sees)
    lr_generator=0.01,
    schedule="cosine",
    lambda_bn=1.0,
    seg_generator_bn=True,  # the setting the quoted demo figures were measured with
)

PANEL_IMAGES = 6  # generated images shown in seg_samples.png


def run_seg_demo(
    out_dir: str = "runs/demo-seg", device: str = "auto", progress: bool = True
) -> str:
    """Train/reuse the teacher, distill the student, write the plots; return the summary line.

    Writes under ``out_dir``: teacher/ (teacher.pt, metrics.csv), metrics.csv, best.pt, last.pt,
    seg_samples.png (generated images beside the teacher's and the student's predicted maps),
    curves.png (mean IoU and losses per epoch).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    trainer, result = distill_with_cached_teacher(
        dataclasses.replace(DEMO_SEG_TEACHER, device=device, progress=progress),
        dataclasses.replace(DEMO_SEG_DISTILL, device=device, progress=progress),
        out,
        "demo-seg",
    )
    trainer.generator.eval()
    with torch.no_grad():
        images = trainer.generator(trainer.noise())[:PANEL_IMAGES]
        maps = {
            "teacher": trainer.teacher(images).argmax(dim=1),
            "student": trainer.student.eval()(images).argmax(dim=1),
        }
    info = trainer.info
    save_seg_panel(images, maps, out / "seg_samples.png", info.mean, info.std, info.num_classes)
    plot_distill_curves(out / "metrics.csv", out / "curves.png")
    seconds = time.perf_counter() - start
    print(f"demo-seg: student best mIoU {result.best_acc:.2f}%, outputs in {out}/")
    line = (
        f"demo-seg: teacher mIoU {result.teacher_acc:.2f}% student mIoU {result.final_acc:.2f}% "
        f"data-free, {seconds:.0f}s"
    )
    print(line)
    return line
