"""How often sign(t - s) under bf16 autocast agrees with fp32, for the models of a finished run.

    python bench/amp_sign_agreement.py runs/tta/x10/fashion-mnist/ddad/seed0

Restores the run's teacher, student and generator from its ``last.pt`` (the models in the modes
the loop uses), generates ``--images`` images and prints the median |t - s| in fp32 and the share
of entries whose sign agrees with fp32 under CPU bf16 autocast: plainly, with fp32 output layers
(what the fast backend does), and with the teacher in fp32 too (``--teacher-fp32``). The student
learns from sign(s - t) alone, so this is the share of its gradient that bf16 keeps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ddad_fast.amp import fp32_output_layer  # noqa: E402
from ddad_fast.builder import build_trainer  # noqa: E402
from ddad_fast.checkpoint import load_checkpoint  # noqa: E402
from ddad_fast.distill_config import DistillConfig  # noqa: E402
from ddad_fast.run_state import load_run_state  # noqa: E402

BF16 = torch.bfloat16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run's folder (holding last.pt)")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ckpt = load_checkpoint(args.run / "last.pt")
    trainer = build_trainer(DistillConfig(**{**ckpt["config"], "resume": True, "device": "cpu"}))
    load_run_state(trainer, args.run / "last.pt")
    teacher, student = trainer.teacher, trainer.student
    draw = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(args.images, trainer.cfg.nz, generator=draw)
    with torch.no_grad():
        images = trainer.generator(noise).to(BF16).float()  # as made under autocast

    def t_minus_s(teacher_amp: bool, student_amp: bool) -> Tensor:
        with torch.no_grad():
            with torch.autocast("cpu", dtype=BF16, enabled=teacher_amp):
                t = teacher(images).float()
            with torch.autocast("cpu", dtype=BF16, enabled=student_amp):
                return t - student(images).float()

    ref, plain = t_minus_s(False, False), t_minus_s(True, True)
    for model in (teacher, student):
        fp32_output_layer(model, dense=False)
    fixed, teacher_fp32 = t_minus_s(True, True), t_minus_s(False, True)

    def agree(d: Tensor) -> str:
        return f"{100 * (d.sign() == ref.sign()).float().mean().item():.2f}%"

    print(
        f"{args.run}: median |t - s| {ref.abs().median():.3f}; sign(t - s) agrees with fp32: "
        f"bf16 {agree(plain)}, fp32 output layers {agree(fixed)}, and teacher in fp32 "
        f"{agree(teacher_fp32)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
