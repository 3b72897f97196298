"""DDAD iterations per second (one generator step + ``student_steps`` student steps), eager fp32
against the fast backend, in the same run, their timed iterations interleaved.

    python bench/bench_step.py --device cpu     # smallcnn -> tinycnn, 3x32x32, batch 64
    python bench/bench_step.py --device cuda    # resnet34 -> resnet18, 3x32x32, batch 256

Appends to bench/results.csv, prints a table and ends with exactly one line
``step: fast/eager speedup <x>x (<teacher>-><student>, bs <b>, <device>)``.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from common import append_results, environment, print_table  # bench/ is the script's path[0]
from torch.utils.flop_counter import FlopCounterMode

from ddad_fast.backends import get_backend
from ddad_fast.data import DatasetInfo
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer, DistillConfig

SETTINGS = {
    "cpu": {"teacher": "smallcnn", "student": "tinycnn", "batch_size": 32, "iters": 8},
    "cuda": {"teacher": "resnet34", "student": "resnet18", "batch_size": 256, "iters": 30},
}


def make_trainer(backend: str, device: str, setting: dict) -> DDADTrainer:
    """A trainer on random-init models (speed does not depend on the teacher's weights)."""
    torch.manual_seed(0)
    info = DatasetInfo("bench", 10, 3, 32, (0.5,) * 3, (0.25,) * 3, False)
    cfg = DistillConfig(
        teacher=setting["teacher"],
        student=setting["student"],
        batch_size=setting["batch_size"],
        device=device,
        backend=backend,
        progress=False,
    )
    teacher = build_model(setting["teacher"], 10, 3, 32)
    student = build_model(setting["student"], 10, 3, 32)
    generator = Generator(cfg.nz, cfg.ngf, 3, 32)
    return DDADTrainer(cfg, teacher, student, generator, [], info, get_backend(backend))


def iteration(trainer: DDADTrainer) -> torch.Tensor:
    """One DDAD iteration: the student steps, then the generator step (as the loop runs them)."""
    for _ in range(trainer.cfg.student_steps):
        trainer.student_step()
    return trainer.generator_step()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(device: str, setting: dict) -> dict[str, dict]:
    """Per backend: median and spread of an iteration's seconds, and peak memory (MB).

    Timed iterations of the two backends alternate, so a machine shared with other work slows
    both alike and the ratio stays fair. Peak memory: CUDA's allocator peak of one iteration on
    GPU; on CPU the process's peak resident size after each backend's warm-up (a coarse bound).
    """
    trainers, result = {}, {}
    for backend in ("eager", "fast"):
        trainers[backend] = make_trainer(backend, device, setting)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(3):  # compile, autotune and CUDA-graph capture happen here
            iteration(trainers[backend])
        sync(device)
        peak_mb = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        result[backend] = {"times": [], "peak_mb": peak_mb}
    for _ in range(setting["iters"]):
        for backend, trainer in trainers.items():
            start = time.perf_counter()
            iteration(trainer)
            sync(device)
            result[backend]["times"].append(time.perf_counter() - start)
    for r in result.values():
        times = sorted(r.pop("times"))
        r["median_s"], r["spread_s"] = times[len(times) // 2], times[-1] - times[0]
    return result


def iteration_flops(device: str) -> int:
    """FLOPs of one eager iteration (convolutions and matmuls, forward and backward)."""
    setting = SETTINGS["cuda" if device.startswith("cuda") else "cpu"]
    trainer = make_trainer("eager", device, setting)
    with FlopCounterMode(display=False) as counter:
        iteration(trainer)
    return counter.get_total_flops()


def bf16_matmul_peak_tflops() -> float:
    """Measured bf16 matmul throughput of this GPU (8192^3), the roofline for the step."""
    import triton.testing

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = triton.testing.do_bench(lambda: a @ a, rep=300)
    return 2 * 8192**3 / ms / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    setting = SETTINGS["cuda" if args.device.startswith("cuda") else "cpu"]
    flops = iteration_flops(args.device)
    images = setting["batch_size"] * (DistillConfig.student_steps + 1)
    env = environment(args.device)
    rows = []
    for backend, m in measure(args.device, setting).items():
        rows.append(
            {
                "bench": "step",
                "backend": backend,
                "pair": f"{setting['teacher']}->{setting['student']}",
                "batch": setting["batch_size"],
                "it_per_s": 1 / m["median_s"],
                "spread_ms": 1e3 * m["spread_s"],
                "images_per_s": images / m["median_s"],
                "tflops": flops / m["median_s"] / 1e12,
                "peak_mb": m["peak_mb"],
                **env,
            }
        )
    if args.device.startswith("cuda"):
        peak = bf16_matmul_peak_tflops()
        for row in rows:
            row["bf16_peak_fraction"] = row["tflops"] / peak
    append_results(rows)
    print(f"one iteration = {flops / 1e9:.2f} GFLOP (conv+matmul, fwd+bwd, counted eagerly)")
    columns = ["backend", "pair", "batch", "it_per_s", "spread_ms", "images_per_s", "tflops"]
    columns += ["peak_mb"] + (["bf16_peak_fraction"] if args.device.startswith("cuda") else [])
    print_table(rows, columns)
    speedup = rows[1]["it_per_s"] / rows[0]["it_per_s"]
    print(
        f"step: fast/eager speedup {speedup:.2f}x ({rows[0]['pair']}, "
        f"bs {setting['batch_size']}, {args.device})"
    )


if __name__ == "__main__":
    main()
