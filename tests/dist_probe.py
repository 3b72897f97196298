"""One generator step of the real trainer on fixed noise: run by torchrun from test_distributed.py,
and in the test's own process for the single-process reference.

``python dist_probe.py TEACHER_CKPT OUT.pt BACKEND``: every rank takes its share of the same global
batch of noise; rank 0 saves the global losses (per-rank L1 and generator losses averaged over the
ranks, the BN term as every rank sees it), the generator's gradients after their average over
ranks, and how many graphs and graph breaks torch.compile made. The generator's objective has the
terms that are not linear in the batch on: DAFL's entropy, and segmentation's -log(1 + L1) in
place of -L1.
"""

import dataclasses
import os
import sys

import torch
import torch.distributed as dist
from torch._dynamo.utils import counters

from ddad_fast.builder import build_trainer
from ddad_fast.distill_config import DistillConfig
from ddad_fast.distributed import shutdown

GLOBAL_BATCH = 16


def probe(teacher_ckpt: str, out_dir: str, backend: str) -> dict[str, torch.Tensor]:
    cfg = DistillConfig(
        teacher_ckpt=teacher_ckpt,
        student="tinycnn",
        dataset="digits",
        out_dir=out_dir,
        batch_size=GLOBAL_BATCH,
        nz=16,
        ngf=8,
        device="cpu",
        backend=backend,
        progress=False,
        lambda_entropy=5.0,
    )
    trainer = build_trainer(cfg)
    trainer.task = dataclasses.replace(trainer.task, log_discrepancy=True)
    ctx = trainer.dist
    # Eval mode makes the generator's and the student's forwards per-sample (their own BN layers
    # use running statistics), so a sample's image and logits do not depend on how the batch is
    # split; the teacher's BN term and the loss scaling are what is compared.
    trainer.generator.eval()
    trainer.student.eval()
    z = torch.randn(GLOBAL_BATCH, cfg.nz, generator=torch.Generator().manual_seed(123))
    z[GLOBAL_BATCH // 2 :] = 3 * z[GLOBAL_BATCH // 2 :] + 1  # halves with unlike statistics
    share = z.chunk(ctx.world_size)[ctx.rank]
    trainer.noise = lambda: share
    losses = trainer.generator_step()  # [L1, bn_loss, generator loss]
    if ctx.distributed:
        dist.all_reduce(losses)
        losses /= ctx.world_size
    grads = torch.cat([p.grad.flatten() for p in trainer.generator.parameters()])
    result = {
        "losses": losses,
        "grads": grads,
        "world_size": torch.tensor(ctx.world_size),
        "graphs": torch.tensor(counters["stats"]["unique_graphs"]),
        "graph_breaks": torch.tensor(sum(counters["graph_break"].values())),
    }
    shutdown(ctx)
    return result


if __name__ == "__main__":
    result = probe(sys.argv[1], sys.argv[2] + ".run", sys.argv[3])
    if int(os.environ.get("RANK", "0")) == 0:
        torch.save(result, sys.argv[2])
