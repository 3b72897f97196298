"""Shared benchmark plumbing: timing (CPU and CUDA), the environment record, results.csv, a table.

Every bench_<op>.py times fast vs eager vs torch.compile(eager) in the same run with these.
"""

from __future__ import annotations

import csv
import platform
import statistics
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS_CSV = Path(__file__).with_name("results.csv")


def cuda_graph_replay(fn: Callable[[], object]) -> Callable[[], None]:
    """A function that replays one CUDA graph of ``fn()``, captured after three warm-up calls on a
    side stream: as in the fast backend's CUDA graphs, what runs is the kernels without their
    launches from Python. ``fn``'s input tensors must stay where they are."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


def time_ms(
    fn: Callable[[], object], device: str, repeats: int = 20, cuda_graph: bool = False
) -> tuple[float, float]:
    """(median, interquartile range) in milliseconds of ``fn()``, after warm-up.

    CUDA: ``triton.testing.do_bench`` (CUDA events, cache flushed between runs), of a replayed
    CUDA graph of ``fn`` when ``cuda_graph`` (``cuda_graph_replay``); otherwise the stream waits
    for the host's launches, and a function of many small kernels times Python. CPU:
    ``torch.utils.benchmark.Timer`` blocked into ``repeats`` measurements.
    """
    if device.startswith("cuda"):
        import triton.testing

        if cuda_graph:
            fn = cuda_graph_replay(fn)

        q25, q50, q75 = triton.testing.do_bench(fn, quantiles=[0.25, 0.5, 0.75], rep=200)
        return q50, q75 - q25
    from torch.utils import benchmark

    fn()  # warm-up (and compile, where fn is compiled)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    runs = timer.blocked_autorange(min_run_time=0.2)
    times = sorted(runs.times)
    while len(times) < repeats:
        times += sorted(timer.blocked_autorange(min_run_time=0.05).times)
    q = statistics.quantiles(times, n=4)
    return 1e3 * statistics.median(times), 1e3 * (q[2] - q[0])


def environment(device: str) -> dict[str, str]:
    """Device name, torch/triton versions and the git commit, for every results row."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
    else:
        name = f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"device": name, "torch": torch.__version__, "triton": triton_version, "commit": commit}


def append_results(rows: list[dict[str, object]], path: Path = RESULTS_CSV) -> None:
    """Append ``rows`` to the CSV at ``path`` (header written when the file is new).

    Rows of different benchmarks may carry different columns: the header is the union seen so far.
    """
    old: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as f:
            old = list(csv.DictReader(f))
    fields: list[str] = []
    for row in old + rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(old + rows)


def print_table(rows: list[dict[str, object]], columns: list[str]) -> None:
    """Print ``rows`` as an aligned text table of ``columns`` (floats with 3 significant digits)."""

    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for b in body:
        print("  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)))
