"""Fused L1 discrepancy vs eager vs torch.compile(eager), forward, backward and both.

    python bench/bench_l1.py --device cpu
    python bench/bench_l1.py --device cuda --dtype float32 bfloat16
    python bench/bench_l1.py --device cpu --shapes 256x10 2x11x16x20 --no-compile   # a quick look

Shapes are the real DDAD outputs: classification logits 256x10 and 256x100, segmentation logit maps
64x11x128x160 and 64x13x128x160. Both inputs require grad (the generator's step: both gradients).
"fwd" times the loss, "bwd" both gradients of an existing graph (autograd.grad, retain_graph;
not under a CUDA graph, whose capture cannot take a backward recorded outside it), "fwd+bwd" the
two together. GB/s is the op's minimal traffic (read t and s; the backward also writes
two gradients) over the measured time, for every implementation alike. On CUDA each is a replayed
CUDA graph, as in the fast backend (``--no-cuda-graph``: launched from Python, which the small
logits cases then time).

Rows go to bench/results.csv (or ``--csv``); a table is printed, then one line
``l1: fused/eager speedup <x>x (fwd+bwd, <device>)`` where x is the geometric mean over the shapes
of eager / fused fwd+bwd time, for the first --dtype, and how the kernels were launched.
"""

from __future__ import annotations

import argparse
import math
import sys
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
from ddad_fast.ops import l1 as l1_ops  # noqa: E402

SHAPES = [(256, 10), (256, 100), (64, 11, 128, 160), (64, 13, 128, 160)]
MODES = ["fwd", "bwd", "fwd+bwd"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_shape(text: str) -> tuple[int, ...]:
    """``"64x11x128x160"`` -> (64, 11, 128, 160): logits (2-D) or logit maps (4-D)."""
    try:
        shape = tuple(int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a shape: {text!r} (e.g. 256x10)") from None
    if len(shape) not in (2, 4) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give N x C or N x C x H x W, each >= 1")
    return shape


def traffic_bytes(numel: int, element_size: int, mode: str) -> int:
    """Minimal bytes moved: the forward reads t and s, the backward reads them and writes two
    gradients."""
    per_pass = {"fwd": 2, "bwd": 4, "fwd+bwd": 6}[mode]
    return per_pass * numel * element_size


def make_inputs(shape, dtype, device):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(shape, generator=g).to(device, dtype)
    s = (t.float() + torch.randn(shape, generator=g).to(device)).to(dtype)
    if len(shape) == 4:  # conv outputs are channels_last on the fast path; eager sees the same
        t = t.contiguous(memory_format=torch.channels_last)
        s = s.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(), s.requires_grad_()


def timed_fns(loss_fn, t, s, backward_alone: bool):
    """mode -> zero-argument function timing that mode of loss_fn; "bwd" only with
    ``backward_alone`` (its autograd graph, made here, must not be alive during a CUDA graph
    capture: the capture then fails on the streams of t's and s's gradient accumulators)."""

    def fwd():
        with torch.no_grad():
            return loss_fn(t, s)

    def both():
        return torch.autograd.grad(loss_fn(t, s), (t, s))

    if not backward_alone:
        return {"fwd": fwd, "fwd+bwd": both}
    graph_loss = loss_fn(t, s)

    def bwd():
        return torch.autograd.grad(graph_loss, (t, s), retain_graph=True)

    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": both}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", nargs="+", default=["float32"], choices=list(DTYPES))
    parser.add_argument("--repeats", type=int, default=20, help="CPU measurements per timing")
    parser.add_argument("--no-csv", action="store_true", help="do not append to results.csv")
    parser.add_argument("--csv", type=Path, default=RESULTS_CSV, help="rows are appended here")
    parser.add_argument(
        "--shapes",
        nargs="+",
        type=parse_shape,
        default=SHAPES,
        help="shapes to time, e.g. 256x10 64x11x128x160 (default: the real DDAD outputs)",
    )
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(eager)")
    parser.add_argument(
        "--no-cuda-graph", action="store_true", help="CUDA: time launches from Python, no graph"
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here")
    if not l1_ops.AVAILABLE:
        parser.error("ddad_fast._C is not built: `make setup` first")

    env = environment(args.device)
    graphs = args.device == "cuda" and not args.no_cuda_graph
    launch = "cuda graph" if graphs else "python"
    fns = {"fused": l1_ops.l1_discrepancy, "eager": losses.l1_discrepancy}
    if not args.no_compile:
        fns["compiled"] = torch.compile(losses.l1_discrepancy, dynamic=False)
    providers = list(fns)
    csv_rows: list[dict[str, object]] = []
    table: list[dict[str, object]] = []
    speedups: list[float] = []
    for dtype_name in args.dtype:
        dtype = DTYPES[dtype_name]
        for shape in args.shapes:
            t, s = make_inputs(shape, dtype, args.device)
            shape_name = "x".join(map(str, shape))
            ms: dict[tuple[str, str], float] = {}
            for provider in providers:
                for mode, fn in timed_fns(fns[provider], t, s, not graphs).items():
                    median, iqr = time_ms(fn, args.device, args.repeats, cuda_graph=graphs)
                    ms[provider, mode] = median
                    gbps = traffic_bytes(t.numel(), t.element_size(), mode) / median / 1e6
                    csv_rows.append(
                        {
                            "bench": "l1",
                            **env,
                            "dtype": dtype_name,
                            "shape": shape_name,
                            "mode": mode,
                            "launch": launch,
                            "provider": provider,
                            "ms": round(median, 5),
                            "iqr_ms": round(iqr, 5),
                            "gbps": round(gbps, 3),
                        }
                    )
            for mode in [m for m in MODES if ("fused", m) in ms]:
                row: dict[str, object] = {"shape": shape_name, "dtype": dtype_name, "mode": mode}
                for provider in providers:
                    row[f"{provider} ms"] = ms[provider, mode]
                fused = ms["fused", mode]
                row["fused GB/s"] = traffic_bytes(t.numel(), t.element_size(), mode) / fused / 1e6
                row["eager/fused"] = ms["eager", mode] / fused
                if "compiled" in fns:
                    row["compiled/fused"] = ms["compiled", mode] / fused
                table.append(row)
            if dtype_name == args.dtype[0]:
                speedups.append(ms["eager", "fwd+bwd"] / ms["fused", "fwd+bwd"])
            del t, s

    if not args.no_csv:
        append_results(csv_rows, args.csv)
    print(f"device: {env['device']}, torch {env['torch']}, commit {env['commit']}")
    columns = ["shape", "dtype", "mode"] + [f"{p} ms" for p in providers]
    ratios = ["eager/fused"] + (["compiled/fused"] if "compiled" in fns else [])
    print_table(table, columns + ["fused GB/s", *ratios])
    speedup = math.exp(sum(map(math.log, speedups)) / len(speedups))
    print(f"l1: fused/eager speedup {speedup:.2f}x (fwd+bwd, {args.device}, {launch})")


if __name__ == "__main__":
    main()
