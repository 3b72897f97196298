"""DDAD iterations per second (one generator step + ``student_steps`` student steps), eager fp32
against the fast backend, in the same run, their timed iterations interleaved.

    python bench/bench_step.py --device cpu     # smallcnn -> tinycnn, 3x32x32, batch 32
    python bench/bench_step.py --device cuda    # resnet34 -> resnet18, 3x32x32, batch 256
    python bench/bench_step.py --device cuda --teacher resnet34 --student resnet18 --batch 256 \
        --image-size 32 --iters 20 --csv /tmp/rows.csv --profile /tmp/top_kernels.md

Per backend: iterations and images per second, achieved TFLOP/s (the FLOPs of one eager iteration,
counted once with FlopCounterMode: convolutions and matmuls, forward and backward) and peak memory.
On CUDA it also measures, on the spot, the bf16 matmul rate (8192^3) and the device-to-device copy
bandwidth (a 2 GiB tensor), and gives each backend's share of the measured matmul rate and of a
reference peak (``--ref-peak-tflops``, 790 TFLOP/s bf16 by default); ``--peaks`` measures the same
on CPU (fp32 1024^3 matmul, a 256 MiB copy). ``--profile PATH`` profiles one fast iteration after
the timed ones and writes its top 10 kernels by CUDA time (CPU: ops by self CPU time) to PATH as a
Markdown table.

``--nproc N`` measures the same iteration again under ``torchrun --nproc_per_node N`` (gloo on CPU,
NCCL on GPUs), the global batch shared among the ranks as ``ddad distill`` shares it: images/s in
total and per rank, and the scaling efficiency, total images/s over N times one process's. On a
machine with fewer cores (or GPUs) than ranks, the ranks share them: the figure then checks that
the distributed step runs and what its communication costs there, not how it scales.

``--replay N`` also times each backend with a replay memory of N samples (holding at least a
batch before the timed iterations, so that their student steps replay; a draw costs the same
however full it is), ``--teacher-fp32`` the fast backend with the teacher outside autocast;
their rows sit beside eager's and fast's.

Appends to bench/results.csv (or ``--csv``), prints a table and ends with exactly one line
``step: fast/eager speedup <x>x (<teacher>-><student>, bs <b>, <device>)`` (with ``--nproc``, a
line ``step: N-rank scaling efficiency ...`` before it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import (  # bench/ is the script's path[0]
    RESULTS_CSV,
    append_results,
    environment,
    print_table,
    time_ms,
)
from torch.utils.flop_counter import FlopCounterMode

from ddad_fast.backends import get_backend
from ddad_fast.data import DatasetInfo
from ddad_fast.distill_config import DistillConfig
from ddad_fast.distributed import SINGLE, DistContext, init_distributed, shutdown
from ddad_fast.models import Generator, build_model
from ddad_fast.trainer import DDADTrainer

SETTINGS = {
    "cpu": {"teacher": "smallcnn", "student": "tinycnn", "batch_size": 32, "iters": 8},
    "cuda": {"teacher": "resnet34", "student": "resnet18", "batch_size": 256, "iters": 30},
}
DEFAULTS = {
    "image_size": 32,
    "channels": 3,
    "classes": 10,
    "warmup": 3,
    "nz": DistillConfig.nz,
    "ngf": DistillConfig.ngf,
}


def make_trainer(
    backend: str, device: str, setting: dict, dist: DistContext = SINGLE
) -> DDADTrainer:
    """A trainer on random-init models (speed does not depend on the teacher's weights); under
    torchrun (``dist``) each rank gets its share of the batch. ``backend`` ``<name>+replay``:
    that backend with a replay memory of ``setting["replay"]`` samples; ``<name>+teacher-fp32``:
    with the teacher outside autocast (``--teacher-fp32``)."""
    backend, _, variant = backend.partition("+")
    setting = {**DEFAULTS, **setting}
    size, channels, classes = setting["image_size"], setting["channels"], setting["classes"]
    torch.manual_seed(0)
    info = DatasetInfo(
        "bench", classes, channels, size, (0.5,) * channels, (0.25,) * channels, False
    )
    cfg = DistillConfig(
        teacher=setting["teacher"],
        student=setting["student"],
        batch_size=setting["batch_size"],
        nz=setting["nz"],
        ngf=setting["ngf"],
        device=device,
        backend=backend,
        replay=setting.get("replay", 0) if variant == "replay" else 0,
        teacher_fp32=variant == "teacher-fp32",
        progress=False,
    )
    teacher = build_model(setting["teacher"], classes, channels, size)
    student = build_model(setting["student"], classes, channels, size)
    generator = Generator(cfg.nz, cfg.ngf, channels, size)
    return DDADTrainer(cfg, teacher, student, generator, [], info, get_backend(backend), dist)


def backends(setting: dict) -> tuple[str, ...]:
    """The backends timed: eager and fast, each with replay when ``setting["replay"]``, and fast
    with the teacher in fp32 when ``setting["teacher_fp32"]`` (eager fp32 has no autocast)."""
    replay = ("eager+replay", "fast+replay") if setting.get("replay") else ()
    fp32 = ("fast+teacher-fp32",) if setting.get("teacher_fp32") else ()
    return ("eager", "fast") + replay + fp32


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(
    device: str, setting: dict, dist: DistContext = SINGLE
) -> tuple[dict[str, dict], dict[str, DDADTrainer]]:
    """Per backend: median and spread of an iteration's seconds, and peak memory (MB); and the
    trainers, warmed up.

    Timed iterations of the two backends alternate, so a machine shared with other work slows
    both alike and the ratio stays fair. Peak memory: on GPU, the CUDA allocator's peak while the
    backend's trainer is built and warmed up (compiled, CUDA graphs captured), less what was
    allocated before (the other backend's trainer); on CPU the process's peak resident size after
    each backend's warm-up (a coarse bound).
    """
    cuda = device.startswith("cuda")
    trainers, result = {}, {}
    for backend in backends(setting):
        if cuda:
            sync(device)
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        trainers[backend] = make_trainer(backend, device, setting, dist)
        for _ in range(setting.get("warmup", DEFAULTS["warmup"])):
            trainers[backend].run_iteration(
                0
            )  # compile, autotune and CUDA-graph capture happen here
        sync(device)
        peak_mb = (
            (torch.cuda.max_memory_allocated() - base) / 2**20
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        result[backend] = {"times": [], "peak_mb": peak_mb}
    for _ in range(setting["iters"]):
        for backend, trainer in trainers.items():
            start = time.perf_counter()
            trainer.run_iteration(0)
            sync(device)
            result[backend]["times"].append(time.perf_counter() - start)
    for r in result.values():
        times = sorted(r.pop("times"))
        r["median_s"], r["spread_s"] = times[len(times) // 2], times[-1] - times[0]
    return result, trainers


def iteration_flops(device: str, setting: dict, backend: str = "eager") -> int:
    """FLOPs of one iteration of the eager loop (convolutions and matmuls, forward and backward);
    ``backend`` ``eager+replay``: of one with its replay memory already holding a batch."""
    trainer = make_trainer(backend, device, setting)
    if trainer.memory is not None:
        trainer.run_iteration(0)  # fills the memory: the counted iteration replays
    with FlopCounterMode(display=False) as counter:
        trainer.run_iteration(0)
    return counter.get_total_flops()


def matmul_tflops(device: str) -> tuple[float, str]:
    """Measured matmul throughput: bf16 8192^3 on CUDA (the roofline for the step), fp32
    1024^3 on CPU. Returns (TFLOP/s, what was measured)."""
    if device.startswith("cuda"):
        n, dtype = 8192, torch.bfloat16
    else:
        n, dtype = 1024, torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    ms, _ = time_ms(lambda: a @ a, device, repeats=5)
    return 2 * n**3 / ms / 1e9, f"{str(dtype).removeprefix('torch.')} {n}^3"


def copy_gbps(device: str) -> tuple[float, str]:
    """Measured copy bandwidth of one tensor into another on the device (2 GiB on CUDA, 256 MiB
    on CPU), counting the bytes read and the bytes written. Returns (GB/s, what was measured)."""
    nbytes = 2 * 2**30 if device.startswith("cuda") else 256 * 2**20
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).fill_(1.0)
    dst = torch.empty_like(src)
    ms, _ = time_ms(lambda: dst.copy_(src), device, repeats=5)
    return 2 * nbytes / ms / 1e6, f"{nbytes / 2**30:g} GiB copy, read + write"


def prepare_profiler(device: str) -> None:
    """Start and stop the profiler once before any CUDA graph is captured: the kernels of a graph
    captured before the profiler's first use may go untraced when it replays under the profiler
    (what ``torch.profiler._utils._init_for_cuda_graphs`` works around)."""
    from torch.profiler import ProfilerActivity, profile

    if device.startswith("cuda"):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
            pass


def profile_iteration(trainer: DDADTrainer, device: str, path: Path, top: int = 10) -> str:
    """Profile one (warmed-up) iteration; write and return a Markdown table of its ``top``
    kernels by CUDA time (on CPU: its ops by self CPU time)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync(device)
    with profile(activities=activities) as prof:
        trainer.run_iteration(0)
        sync(device)
    events = prof.key_averages()

    def self_us(e) -> float:
        return e.self_device_time_total if cuda else e.self_cpu_time_total

    if cuda:  # kernels, copies and memsets; not the annotations drawn on the GPU's timeline
        kernels = [
            e
            for e in events
            if e.device_type == DeviceType.CUDA
            and not getattr(e, "is_user_annotation", False)
            and self_us(e) > 0
        ]
        what = "kernels by CUDA time"
    else:
        kernels = [e for e in events if self_us(e) > 0]
        what = "ops by self CPU time"
    total = sum(self_us(e) for e in kernels) or 1.0
    kernels.sort(key=self_us, reverse=True)
    lines = [
        f"Top {top} {what} in one `fast` iteration ({trainer.cfg.teacher}->"
        f"{trainer.cfg.student}, batch {trainer.cfg.batch_size}, {device}; "
        f"{len(kernels)} distinct, {total / 1e3:.2f} ms in all)",
        "",
        "| # | name | calls | total ms | share |",
        "|---:|---|---:|---:|---:|",
    ]
    for rank, e in enumerate(kernels[:top], 1):
        name = e.key if len(e.key) <= 100 else e.key[:97] + "..."
        name = name.replace("|", "\\|")
        us = self_us(e)
        lines.append(
            f"| {rank} | `{name}` | {e.count} | {us / 1e3:.3f} | {100 * us / total:.1f}% |"
        )
    if not kernels:
        lines.append("| - | (the profiler recorded no kernel) | | | |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


WORKER_ARGV = "BENCH_STEP_WORKER_ARGV"  # a torchrun worker's arguments, as a JSON list


def rank_worker(device: str, setting: dict, out: Path) -> None:
    """Under torchrun: every rank times the iterations; rank 0 writes each backend's slowest
    rank's median seconds per iteration to ``out`` (JSON)."""
    ctx = init_distributed(device)
    measured, _ = measure(device, setting, ctx)
    medians = [measured[b]["median_s"] for b in ("eager", "fast")]
    every = [None] * ctx.world_size
    torch.distributed.all_gather_object(every, medians, group=ctx.cpu_group)
    if ctx.is_main:
        slowest = [max(rank[i] for rank in every) for i in range(2)]
        out.write_text(json.dumps({"eager": slowest[0], "fast": slowest[1], "nproc": len(every)}))
    shutdown(ctx)


def scaling_rows(single: list[dict], nproc: int, argv: list[str]) -> list[dict]:
    """The iteration under ``torchrun --nproc_per_node nproc`` (this script with ``argv``), one
    row per backend beside ``single``'s: images/s in total and per rank, and the scaling
    efficiency (total over ``nproc`` times one process's)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ranks.json"
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        # The arguments travel in the environment: torchrun's parser would take --nproc for its own.
        env[WORKER_ARGV] = json.dumps([*argv, "--rank-json", str(out)])
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        subprocess.run([*command, f"--nproc_per_node={nproc}", __file__], env=env, check=True)
        seconds = json.loads(out.read_text())
    rows = []
    for row in (r for r in single if r["backend"] in seconds):
        images = row["images_per_s"] / row["it_per_s"]  # the global batch's images per iteration
        total = images / seconds[row["backend"]]
        rows.append(
            {
                **{k: row[k] for k in ("bench", "backend", "pair", "batch", "image")},
                "nproc": nproc,
                "it_per_s": 1 / seconds[row["backend"]],
                "images_per_s": total,
                "images_per_s_per_rank": total / nproc,
                "scaling_efficiency": total / (nproc * row["images_per_s"]),
                **{k: row[k] for k in ("device", "torch", "triton", "commit")},
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--teacher", help="default: resnet34 on cuda, else smallcnn")
    parser.add_argument("--student", help="default: resnet18 on cuda, else tinycnn")
    parser.add_argument("--batch", type=int, help="default: 256 on cuda, else 32")
    parser.add_argument("--image-size", type=int, default=DEFAULTS["image_size"])
    parser.add_argument("--channels", type=int, default=DEFAULTS["channels"])
    parser.add_argument("--classes", type=int, default=DEFAULTS["classes"])
    parser.add_argument("--nz", type=int, default=DEFAULTS["nz"], help="generator's noise size")
    parser.add_argument("--ngf", type=int, default=DEFAULTS["ngf"], help="generator's width")
    parser.add_argument("--iters", type=int, help="timed iterations per backend (30 cuda, 8 cpu)")
    parser.add_argument("--warmup", type=int, default=DEFAULTS["warmup"], help="untimed, each")
    parser.add_argument("--csv", type=Path, default=RESULTS_CSV, help="rows are appended here")
    parser.add_argument(
        "--peaks", action="store_true", help="measure matmul rate and copy bandwidth on CPU too"
    )
    parser.add_argument(
        "--ref-peak-tflops",
        type=float,
        default=790.0,
        help="reference bf16 matmul peak of the GPU, for the share of it a step achieves",
    )
    parser.add_argument("--profile", type=Path, help="write the top kernels of a fast iteration")
    parser.add_argument("--nproc", type=int, default=1, help="also under torchrun, N ranks")
    parser.add_argument(
        "--replay", type=int, default=0, help="also each backend with a memory of N samples"
    )
    parser.add_argument(
        "--teacher-fp32", action="store_true", help="also fast with the teacher outside autocast"
    )
    parser.add_argument("--rank-json", type=Path, help=argparse.SUPPRESS)  # a torchrun worker
    worker_argv = os.environ.get(WORKER_ARGV)
    args = parser.parse_args(None if worker_argv is None else json.loads(worker_argv))
    cuda = args.device.startswith("cuda")
    setting = dict(SETTINGS["cuda" if cuda else "cpu"])
    for key, value in (
        ("teacher", args.teacher),
        ("student", args.student),
        ("batch_size", args.batch),
        ("iters", args.iters),
    ):
        if value is not None:
            setting[key] = value
    setting.update(
        image_size=args.image_size,
        channels=args.channels,
        classes=args.classes,
        warmup=args.warmup,
        nz=args.nz,
        ngf=args.ngf,
        replay=args.replay,
        teacher_fp32=args.teacher_fp32,
    )
    if args.rank_json is not None:
        rank_worker(args.device, setting, args.rank_json)
        return
    if args.profile is not None:
        prepare_profiler(args.device)
    flops = iteration_flops(args.device, setting)
    replay_flops = iteration_flops(args.device, setting, "eager+replay") if args.replay else 0
    images = setting["batch_size"] * (DistillConfig.student_steps + 1)
    env = environment(args.device)
    rows = []
    measured, trainers = measure(args.device, setting)
    size = setting["image_size"]
    for backend, m in measured.items():
        rows.append(
            {
                "bench": "step",
                "backend": backend,
                "pair": f"{setting['teacher']}->{setting['student']}",
                "batch": setting["batch_size"],
                "image": f"{args.channels}x{size}x{size}",
                "it_per_s": 1 / m["median_s"],
                "spread_ms": 1e3 * m["spread_s"],
                "images_per_s": images / m["median_s"],
                "tflops": (replay_flops if "replay" in backend else flops) / m["median_s"] / 1e12,
                "peak_mb": m["peak_mb"],
                **env,
            }
        )
    peak_lines = []
    if cuda or args.peaks:
        matmul, matmul_what = matmul_tflops(args.device)
        copy, copy_what = copy_gbps(args.device)
        peak_lines = [
            f"measured matmul: {matmul:.3g} TFLOP/s ({matmul_what}, {args.device})",
            f"measured copy bandwidth: {copy:.3g} GB/s ({copy_what}, {args.device})",
        ]
        if cuda:  # what "eager fp32" means for its convolutions and matmuls
            peak_lines.append(
                f"eager precision: fp32 parameters and activations; TF32 allowed in cuDNN "
                f"convolutions: {torch.backends.cudnn.allow_tf32}, in matmuls: "
                f"{torch.backends.cuda.matmul.allow_tf32}"
            )
        for row in rows:
            row.update(matmul_tflops=matmul, copy_gbps=copy)
            row["bf16_peak_fraction" if cuda else "matmul_fraction"] = row["tflops"] / matmul
            if cuda:
                row["ref_peak_tflops"] = args.ref_peak_tflops
                row["pct_ref_peak"] = 100 * row["tflops"] / args.ref_peak_tflops
    scaling = []
    if args.nproc > 1:
        scaling = scaling_rows(rows, args.nproc, [*sys.argv[1:], "--nproc", "1"])
    append_results(rows + scaling, args.csv)
    print(f"one iteration = {flops / 1e9:.2f} GFLOP (conv+matmul, fwd+bwd, counted eagerly)")
    for line in peak_lines:
        print(line)
    if args.profile is not None:
        print(profile_iteration(trainers["fast"], args.device, args.profile))
    columns = ["backend", "pair", "batch", "it_per_s", "spread_ms", "images_per_s", "tflops"]
    columns += ["peak_mb"] + (["bf16_peak_fraction", "pct_ref_peak"] if cuda else [])
    print_table(rows, columns)
    if scaling:
        print()
        print_table(
            [{**r, "nproc": 1, "images_per_s_per_rank": r["images_per_s"],
              "scaling_efficiency": 1.0} for r in rows] + scaling,
            ["backend", "nproc", "it_per_s", "images_per_s", "images_per_s_per_rank",
             "scaling_efficiency"],
        )  # fmt: skip
        efficiency = ", ".join(f"{r['backend']} {r['scaling_efficiency']:.2f}" for r in scaling)
        print(f"step: {args.nproc}-rank scaling efficiency {efficiency} ({args.device})")
    speedup = rows[1]["it_per_s"] / rows[0]["it_per_s"]
    print(
        f"step: fast/eager speedup {speedup:.2f}x ({rows[0]['pair']}, "
        f"bs {setting['batch_size']}, {args.device})"
    )


if __name__ == "__main__":
    main()
