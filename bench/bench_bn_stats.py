"""Fused ddad::bn_stats_loss vs the eager reference vs torch.compile(eager), over every BN layer of
a teacher (default: ResNet-34 on 32x32 CIFAR images, batch 256): forward, backward, and both.

    python bench/bench_bn_stats.py --device cpu     # or --device cuda

The layer shapes come from one forward of ``build_model(model, 10)`` with hooks on its BatchNorm2d
layers. Each pass sums the layers' terms as the teacher's hooks do (``BNStatsHooks.collect``):
forward builds the autograd graph (the generator's images require grad), backward is
``autograd.grad`` of the total into every layer input, timed alone on a fresh graph each run
(compiled backwards free their saved buffers, so a graph cannot be replayed). GB/s counts the
bytes a fused pass must move (forward: read x; backward: read x and write dx), so the three
implementations compare on one scale; the peak is the device's DRAM bandwidth (CUDA) or a
measured ``x.sum()`` read rate (CPU). On CPU, fresh pages for dx dominate the backward unless
torch's allocator uses huge pages: ``THP_MEM_ALLOC_ENABLE=1 python bench/...`` (recorded as
cpu_alloc). On CUDA every pass is a replayed CUDA graph, as in the fast backend (launching 36
layers' kernels one by one from Python takes longer than the kernels); the backward alone needs a
fresh autograd graph, recorded outside the capture, per run, so it is timed only with
``--no-cuda-graph``.
Rows go to bench/results.csv (or ``--csv``); the table is printed last, then one summary line.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_CSV,
    append_results,
    environment,
    print_table,
    time_ms,
)
from ddad_fast import losses  # noqa: E402
from ddad_fast.bn_hooks import batchnorm_layers  # noqa: E402
from ddad_fast.models import build_model  # noqa: E402
from ddad_fast.ops.bn_stats import bn_stats_loss, fused_available  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bn_input_shapes(model: str, batch: int, size: int) -> list[tuple[int, int, int, int]]:
    """(N, C, H, W) of the input of every BatchNorm2d of ``model``, in the order they run."""
    net = build_model(model, 10, image_size=size).eval()
    shapes: list[tuple[int, int, int, int]] = []
    handles = [
        bn.register_forward_hook(lambda m, i, o: shapes.append((batch, *i[0].shape[1:])))
        for bn in batchnorm_layers(net)
    ]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return shapes


def make_layers(shapes, device, dtype, channels_last):
    """Per layer: x (requires grad) with BN-input-like statistics, running_mean, running_var."""
    gen = torch.Generator().manual_seed(0)
    layers = []
    for n, c, h, w in shapes:
        x = torch.randn(n, c, h, w, generator=gen) + torch.randn(1, c, 1, 1, generator=gen)
        x = x.to(device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        rm = (0.5 * torch.randn(c, generator=gen)).to(device)
        rv = (0.5 + torch.rand(c, generator=gen)).to(device)
        layers.append((x.requires_grad_(), rm, rv))
    return layers


def peak_gbps(layers, device: str) -> float:
    """DRAM bandwidth from the driver (CUDA), or the read rate of x.sum() over the inputs (CPU)."""
    if device.startswith("cuda"):
        try:
            import triton.testing

            return triton.testing.get_dram_gbps() / 1.0
        except Exception:  # noqa: BLE001 (an estimate only; a driver without it is fine)
            return float("nan")
    xs = [x.detach() for x, _, _ in layers]
    ms, _ = time_ms(lambda: [x.sum() for x in xs], device, repeats=5)
    return sum(x.numel() * x.element_size() for x in xs) / ms / 1e6


def time_backward_ms(make_loss, inputs, device: str, repeats: int) -> tuple[float, float]:
    """(median, interquartile range) in ms of ``autograd.grad(make_loss(), inputs)``, the
    backward alone: the graph is built, untimed, before every run; the first run is a warm-up."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    times = []
    for _ in range(repeats + 1):
        loss = make_loss()
        sync()
        start = time.perf_counter()
        torch.autograd.grad(loss, inputs)
        sync()
        times.append(1e3 * (time.perf_counter() - start))
        del loss
    q = statistics.quantiles(times[1:], n=4)
    return statistics.median(times[1:]), q[2] - q[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet34")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per cell (CPU)")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(eager)")
    parser.add_argument(
        "--no-cuda-graph", action="store_true", help="CUDA: time launches from Python, no graph"
    )
    parser.add_argument("--csv", type=Path, default=RESULTS_CSV, help="rows are appended here")
    args = parser.parse_args()
    if not fused_available(args.device):
        sys.exit(f"no fused bn_stats kernel for {args.device}: build ddad_fast._C / install triton")

    shapes = bn_input_shapes(args.model, args.batch, args.size)
    layers = make_layers(shapes, args.device, DTYPES[args.dtype], args.channels_last)
    xs = [x for x, _, _ in layers]
    graphs = args.device.startswith("cuda") and not args.no_cuda_graph
    launch = "cuda graph" if graphs else "python"
    x_bytes = sum(x.numel() * x.element_size() for x in xs)
    impls = {"eager": losses.bn_stats_loss, "fused": bn_stats_loss}
    if not args.no_compile:
        impls["compile"] = torch.compile(losses.bn_stats_loss)

    def total(fn):
        return torch.stack([fn(x, rm, rv) for x, rm, rv in layers]).sum()

    reference = total(losses.bn_stats_loss).item()
    env = environment(args.device)
    # Large CPU tensors (dx, eager's temporaries) come from fresh pages unless torch's allocator
    # asks for transparent huge pages; page faults then cost as much as the work. Recorded.
    cpu_alloc = "thp" if os.environ.get("THP_MEM_ALLOC_ENABLE") == "1" else "default"
    peak = peak_gbps(layers, args.device)
    print(
        f"{args.model} batch {args.batch} {args.size}x{args.size}: {len(shapes)} BN layers, "
        f"{x_bytes / 1e9:.2f} GB of inputs ({args.dtype}"
        f"{', channels_last' if args.channels_last else ''}); {env['device']}; "
        f"peak {peak:.1f} GB/s; CPU allocator pages: {cpu_alloc}",
        flush=True,
    )
    rows = []
    for name, fn in impls.items():
        value = total(fn).item()  # a check that all three agree
        if abs(value - reference) > 1e-3 * abs(reference):
            raise SystemExit(f"{name} gives {value}, eager {reference}: not benchmarking that")
        for _ in range(2):  # warm-up: compiles forward and backward graphs, touches the memory
            torch.autograd.grad(total(fn), xs)
        passes = {
            "fwd": (lambda fn=fn: total(fn), x_bytes),
            "bwd": (None, 2 * x_bytes),
            "fwd+bwd": (lambda fn=fn: torch.autograd.grad(total(fn), xs), 3 * x_bytes),
        }
        for pass_name, (run, nbytes) in passes.items():
            if run is None:
                if graphs:
                    continue
                ms, iqr = time_backward_ms(lambda fn=fn: total(fn), xs, args.device, args.repeats)
            else:
                ms, iqr = time_ms(run, args.device, repeats=args.repeats, cuda_graph=graphs)
            rows.append(
                {
                    "bench": "bn_stats",
                    **env,
                    "model": args.model,
                    "batch": args.batch,
                    "size": args.size,
                    "dtype": args.dtype,
                    "memory_format": "channels_last" if args.channels_last else "nchw",
                    "cpu_alloc": cpu_alloc,
                    "launch": launch,
                    "pass": pass_name,
                    "impl": name,
                    "ms": ms,
                    "iqr_ms": iqr,
                    "gbps": nbytes / ms / 1e6,
                    "peak_gbps": peak,
                }
            )
            print(f"  {name:8s} {pass_name:8s} {ms:9.2f} ms (IQR {iqr:.2f})", flush=True)
    eager_ms = {r["pass"]: r["ms"] for r in rows if r["impl"] == "eager"}
    for r in rows:
        r["speedup"] = eager_ms[r["pass"]] / r["ms"]
        r["pct_peak"] = 100.0 * r["gbps"] / peak
    append_results(rows, args.csv)
    rows.sort(key=lambda r: (["fwd", "bwd", "fwd+bwd"].index(r["pass"]), r["impl"]))
    print()
    print_table(rows, ["pass", "impl", "ms", "iqr_ms", "gbps", "pct_peak", "speedup"])
    speedup = next(r["speedup"] for r in rows if r["pass"] == "fwd+bwd" and r["impl"] == "fused")
    print(f"bn_stats: fused/eager speedup {speedup:.2f}x (fwd+bwd, {args.device}, {launch})")


if __name__ == "__main__":
    main()
