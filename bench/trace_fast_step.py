"""The fast backend's two loss functions traced by torch._dynamo for a GPU run, without a GPU.

A ``DDADTrainer`` with ``--backend fast`` on device ``cuda`` is built under ``FakeTensorMode``
(every parameter and activation a fake CUDA tensor: shapes, dtypes and devices, no memory), with
the device taken as an H200 (132 SMs) for the Triton launcher. Its ``student_loss`` and
``generator_loss`` are then traced with ``torch._dynamo.explain`` on a fake batch of noise, bf16
autocast on CUDA really on, as ``torch.compile(fullgraph=True)`` would trace them on the GPU.
Fails (exit 1) unless each is one graph with no break, with bf16 activations and fp32 logits
into the L1. Prints, and writes with --out, a table.

The few questions that would reach a GPU are answered as an H200 would answer them: while the
trainer is built, the device (``cuda``) and its noise generator (a CPU one: the trace passes its
own noise); while tracing, autocast's checks (CUDA present, bf16 supported) and the Triton
launcher's SM count.

    python bench/trace_fast_step.py --teacher resnet34 --student resnet18 --batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import torch
from check_report import finish_report
from torch._subclasses.fake_tensor import FakeTensorMode
from triton_aot_report import as_h200

from ddad_fast.backends import FAST
from ddad_fast.data import DatasetInfo
from ddad_fast.distill_config import DistillConfig
from ddad_fast.models import build_model
from ddad_fast.models.generator import Generator
from ddad_fast.trainer import DDADTrainer


def fake_cuda_trainer(
    teacher: str,
    student: str,
    batch: int,
    image_size: int,
    fake_mode: FakeTensorMode,
    teacher_fp32: bool = False,
) -> DDADTrainer:
    """A fast-backend trainer on fake CUDA tensors (CIFAR-10 shapes: 10 classes, 3 channels).

    The models are made as real CPU modules; the trainer moves them to CUDA inside ``fake_mode``
    in one conversion (a module whose parameters are fake already cannot be converted again).
    """
    cfg = DistillConfig(
        teacher=teacher,
        student=student,
        batch_size=batch,
        image_size=image_size,
        backend="fast",
        device="cuda",
        progress=False,
        teacher_fp32=teacher_fp32,
    )
    info = DatasetInfo("cifar10", 10, 3, image_size, (0.5,) * 3, (0.5,) * 3, hflip=True)
    models = (
        build_model(teacher, 10, 3, image_size),
        build_model(student, 10, 3, image_size),
        Generator(cfg.nz, cfg.ngf, 3, image_size),
    )
    cpu_generator = torch.Generator
    with (
        fake_mode,
        mock.patch("ddad_fast.trainer.rank_device", return_value=torch.device("cuda")),
        mock.patch("ddad_fast.distill_config.check_device"),  # "cuda" is fine: it is faked
        mock.patch("torch.Generator", lambda device=None: cpu_generator()),
    ):
        return DDADTrainer(cfg, *models, test_set=None, info=info, ops=FAST)


@contextlib.contextmanager
def autocast_on_fake_cuda():
    """CUDA autocast as on a GPU: its two questions about the device (is CUDA there at all, does
    it take bf16) answered yes, so that ``torch.autocast("cuda", torch.bfloat16)`` is on."""
    with (
        mock.patch("torch.cuda.amp.common.amp_definitely_not_available", return_value=False),
        mock.patch("torch.cuda.is_bf16_supported", return_value=True),
    ):
        yield


def _is_bf16(value) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16


def trace_losses(
    trainer: DDADTrainer, fake_mode: FakeTensorMode, rows: list[str], problems: list[str]
) -> None:
    """Trace the trainer's two compiled loss functions with dynamo on fake CUDA tensors under
    bf16 autocast; append a table row each to ``rows`` and what is wrong to ``problems``."""
    tag = " (teacher fp32)" if trainer.cfg.teacher_fp32 else ""
    with fake_mode, autocast_on_fake_cuda():
        z = torch.randn(trainer.batch, trainer.cfg.nz, device="cuda")
        for fn in (trainer.student_loss, trainer.generator_loss):
            name = f"`{fn.__name__}`{tag}"
            explanation = torch._dynamo.explain(fn)(z)
            nodes = [n for g in explanation.graphs for n in g.graph.nodes]
            bf16 = sum(_is_bf16(n.meta.get("example_value")) for n in nodes)
            fused = Counter(str(n.target) for n in nodes if str(n.target).startswith("ddad."))
            l1_inputs = {
                str(arg.meta["example_value"].dtype).removeprefix("torch.")
                for n in nodes
                if str(n.target).startswith("ddad.l1_discrepancy")
                for arg in n.args
            }
            if l1_inputs != {"float32"}:
                problems.append(f"{name}: the L1 takes {l1_inputs} logits, not fp32")
            rows.append(
                f"| {name} | {explanation.graph_count} | "
                f"{explanation.graph_break_count} | {len(nodes)} | {bf16} | "
                f"{', '.join(sorted(l1_inputs))} | "
                + ", ".join(f"{op} x{k}" for op, k in sorted(fused.items()))
                + " |"
            )
            if not bf16:
                problems.append(f"{name}: no bf16 tensor in the graph (autocast off?)")
            if explanation.graph_count != 1 or explanation.graph_break_count:
                reasons = "; ".join(str(r.reason) for r in explanation.break_reasons)
                problems.append(f"{name}: {explanation.graph_count} graphs, {reasons}")
            torch._dynamo.reset()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", default="resnet34")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()

    as_h200()
    rows, problems = [], []
    for teacher_fp32 in (False, True):  # the default, and --teacher-fp32
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        shapes = args.teacher, args.student, args.batch, args.image_size
        trainer = fake_cuda_trainer(*shapes, fake_mode, teacher_fp32)
        trace_losses(trainer, fake_mode, rows, problems)
    lines = [
        f"torch {torch.__version__}: the fast backend's loss functions, {args.teacher} -> "
        f"{args.student}, batch {args.batch}, {args.image_size}x{args.image_size}, fake CUDA "
        "tensors, bf16 autocast",
        "",
        "| function | graphs | graph breaks | FX nodes | bf16 results | L1 inputs | fused ops |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    return finish_report(lines, args.out, problems)


if __name__ == "__main__":
    sys.exit(main())
