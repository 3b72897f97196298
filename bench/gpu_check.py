"""The Python parts of ``bench/gpu_check.sh``: the extension check, the one-rank process-group
probe, and the Markdown report of a check's folder.

    python bench/gpu_check.py extension --device cuda          # kernels registered, and right
    torchrun --standalone --nproc_per_node=1 bench/gpu_check.py pg --device cuda   # NCCL, 1 rank
    python bench/gpu_check.py report OUT                       # OUT/gpu_check.md from OUT/

The report reads what the shell script left in OUT: ``steps.csv`` (one row per step: id, name,
status, seconds, exit status, limit), ``logs/<id>.log`` (each step's output), ``results.csv``
(the benchmarks' rows), ``variants.csv`` (step 8's rows), ``tests.xml`` (pytest's JUnit report),
``parity/parity.md`` and ``top_kernels.md``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPS = ("ddad::l1_discrepancy", "ddad::l1_discrepancy_backward")


# ---- extension ----------------------------------------------------------------------------------


def check_extension(device: str) -> int:
    """Whether ddad_fast._C loaded, each L1 op has a kernel for ``device``'s dispatch key, and the
    fused L1 and BN-statistics losses equal the eager references there. Exit status 0 when all do.
    """
    import torch

    from ddad_fast import losses
    from ddad_fast.ops import bn_stats, l1

    key = "CUDA" if device.startswith("cuda") else "CPU"
    print(f"environment: {environment_line()}")
    ok = l1.AVAILABLE
    print(f"ddad_fast._C loaded: {'yes' if l1.AVAILABLE else 'no'}")
    for op in OPS:
        has = l1.AVAILABLE and torch._C._dispatch_has_kernel_for_dispatch_key(op, key)
        ok &= has
        print(f"{op} has a {key} kernel: {'yes' if has else 'no'}")
    fused_bn = bn_stats.fused_available(device)
    print(f"fused bn_stats_loss on {device}: {'yes' if fused_bn else 'no (eager fallback)'}")
    ok &= fused_bn
    if not ok:
        return 1
    gen = torch.Generator().manual_seed(0)
    for shape in ((256, 10), (4, 11, 16, 20)):
        t = torch.randn(shape, generator=gen).to(device)
        s = torch.randn(shape, generator=gen).to(device).requires_grad_()
        fused = l1.l1_discrepancy(t, s)
        (g_fused,) = torch.autograd.grad(fused, s)
        ref = losses.l1_discrepancy(t, s)
        (g_ref,) = torch.autograd.grad(ref, s)
        torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g_fused, g_ref, rtol=1e-5, atol=1e-8)
    x = (torch.randn(8, 16, 7, 7, generator=gen) * 2 + 1).to(device).requires_grad_()
    rm, rv = torch.zeros(16, device=device), torch.ones(16, device=device)
    fused, ref = bn_stats.bn_stats_loss(x, rm, rv), losses.bn_stats_loss(x, rm, rv)
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        torch.autograd.grad(fused, x)[0], torch.autograd.grad(ref, x)[0], rtol=1e-3, atol=1e-6
    )
    print(
        f"extension: OK ({key} kernels registered; fused L1 and BN losses match eager on {device})"
    )
    return 0


# ---- one-rank process group ---------------------------------------------------------------------


def probe_process_group(device: str) -> int:
    """Under torchrun with one rank: NCCL (CUDA) or gloo (CPU) initialised as ``distributed.py``
    does, then the collectives the trainer relies on, on this rank's device.

    One rank is all a one-GPU machine can run with NCCL, and at a world size of 1 the trainer makes
    no process group of its own (``launched_by_torchrun``); so this probe makes the group, then
    checks: ``init_distributed`` joins it and adds the gloo group for host-side control; an
    all-reduce of a device tensor; the functional all-reduce ``global_bn_stats_loss`` uses, with its
    backward; a host all-reduce on the gloo group; then three iterations of the fast backend
    (compiled, with CUDA graphs on a GPU) in that process group, with finite losses.
    """
    import torch
    import torch.distributed as dist
    from torch.distributed import _functional_collectives as fc

    from ddad_fast.backends import FAST
    from ddad_fast.data import DatasetInfo
    from ddad_fast.distill_config import DistillConfig
    from ddad_fast.distributed import DistContext, init_distributed, rank_device
    from ddad_fast.models import Generator, build_model
    from ddad_fast.trainer import DDADTrainer

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = rank_device(device, DistContext(world_size=world, local_rank=local_rank))
    want = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    ctx = init_distributed(device)
    assert dist.get_backend() == want, dist.get_backend()
    assert ctx.world_size == world and not ctx.owns_group
    assert (ctx.cpu_group is not None) == (want != "gloo"), "a gloo group for host-side control"
    print(f"process group: {dist.get_backend()}, rank {ctx.rank} of {ctx.world_size}, {dev}")

    t = torch.arange(4.0, device=dev)
    dist.all_reduce(t)
    torch.testing.assert_close(t, world * torch.arange(4.0, device=dev))
    x = torch.randn(8, device=dev, requires_grad=True)
    y = fc.all_reduce(x, "sum", dist.group.WORLD)
    (y * torch.arange(8.0, device=dev)).sum().backward()
    torch.testing.assert_close(y, world * x.detach())
    torch.testing.assert_close(x.grad, world * torch.arange(8.0, device=dev))
    print("all_reduce and the functional all_reduce (forward and backward): OK")

    flag = torch.tensor([1.0])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=ctx.cpu_group)
    assert flag.item() == 1.0
    print("host-side all_reduce on the control group: OK")

    torch.manual_seed(0)
    # ResNet-34 -> ResNet-18 on the GPU; the digits-sized pair in a dry run on CPU
    cuda = dev.type == "cuda"
    pair, size = (("resnet34", "resnet18"), 32) if cuda else (("smallcnn", "tinycnn"), 8)
    cfg = DistillConfig(
        student=pair[1], batch_size=64, nz=32, ngf=16, device=device, backend="fast",
        progress=False,
    )  # fmt: skip
    trainer = DDADTrainer(
        cfg,
        *(build_model(name, 10, 3, size) for name in pair),
        Generator(cfg.nz, cfg.ngf, 3, size),
        [],
        DatasetInfo("probe", 10, 3, size, (0.5,) * 3, (0.25,) * 3, False),
        FAST,
        ctx,
    )
    for it in range(3):
        trainer.run_iteration(it)
    assert torch.isfinite(trainer.losses[:3]).all(), trainer.losses[:3]
    graphs = "with CUDA graphs" if cuda else "no CUDA graphs on CPU"
    print(f"fast backend, 3 iterations in the process group ({graphs}): OK")
    dist.barrier()
    dist.destroy_process_group()
    print(f"process group probe: OK ({want}, {world} rank(s), {dev})")
    return 0


# ---- report -------------------------------------------------------------------------------------


def last_match(path: Path, pattern: str) -> str:
    """The last line of ``path`` that matches ``pattern`` (a regex), or ""."""
    if not path.exists():
        return ""
    found = [ln for ln in path.read_text(errors="replace").splitlines() if re.search(pattern, ln)]
    return found[-1].strip() if found else ""


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def junit_counts(path: Path) -> str:
    """``N passed, F failed, E errors, S skipped`` from a JUnit XML report."""
    if not path.exists():
        return "no test report"
    suites = ET.parse(path).getroot()
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites.iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    return (
        f"{passed} passed, {totals['failures']} failed, {totals['errors']} errors, "
        f"{totals['skipped']} skipped"
    )


def fmt(value: str, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}g}"
    except ValueError:
        return value


def step_rows(out: Path, name: str = "results.csv") -> list[dict[str, str]]:
    """The bench_step rows of ``out/name``: step 4's (results.csv) or step 8's (variants.csv)."""
    rows = read_csv(out / name)
    return [r for r in rows if r.get("bench") == "step"]


def step_summary(out: Path) -> str:
    rows = {r["backend"]: r for r in step_rows(out)}
    if set(rows) != {"eager", "fast"}:
        return ""
    e, f = rows["eager"], rows["fast"]
    speed = float(f["it_per_s"]) / float(e["it_per_s"])
    text = (
        f"{e['pair']} bs {e['batch']}: eager {fmt(e['images_per_s'])} img/s, fast "
        f"{fmt(f['images_per_s'])} img/s ({speed:.2f}x); {fmt(e['tflops'])} / {fmt(f['tflops'])} "
        f"TFLOP/s; peak {fmt(e['peak_mb'], 4)} / {fmt(f['peak_mb'], 4)} MB"
    )
    if f.get("pct_ref_peak"):
        text += f"; fast at {float(f['pct_ref_peak']):.1f}% of {fmt(f['ref_peak_tflops'])}"
    return text


def variants_summary(out: Path) -> str:
    """Step 8 in one line: each variant's images/s as a multiple of its backend's without it."""
    rows = {r["backend"]: r for r in step_rows(out, "variants.csv")}
    parts = [
        f"{variant} {fmt(rows[variant]['images_per_s'])} img/s "
        f"({float(rows[variant]['it_per_s']) / float(rows[base]['it_per_s']):.2f}x {base})"
        for variant in ("eager+replay", "fast+replay", "fast+teacher-fp32")
        if variant in rows and (base := variant.partition("+")[0]) in rows
    ]
    return "; ".join(parts)


def summaries(out: Path) -> dict[str, str]:
    """Step id -> its key result, one line, from the step's log and files."""
    logs = out / "logs"
    kernels = out / "top_kernels.md"
    top = last_match(kernels, r"^\| 1 \|")
    if top:
        cells = [c.strip() for c in top.strip("|").split("|")]
        top = f"top: {cells[1]} ({cells[4]} of the iteration's kernel time)"
    return {
        "1": last_match(logs / "1.log", r"^extension: ") or last_match(logs / "1.log", r": no\b"),
        "2": junit_counts(out / "tests.xml"),
        "3a": last_match(logs / "3a.log", r"^bn_stats: "),
        "3b": last_match(logs / "3b.log", r"^l1: "),
        "4": step_summary(out),
        "5": last_match(logs / "5.log", r"^parity: "),
        "6": top,
        "7a": last_match(logs / "7a.log", r"distill: teacher"),
        "7b": last_match(logs / "7b.log", r"^process group probe: "),
        "8": variants_summary(out),
    }


def environment_line() -> str:
    """The GPU, the CPU count and the versions that matter, in one line."""
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA GPU"
    cuda = f" (CUDA {torch.version.cuda})" if torch.version.cuda else ""
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    return (
        f"{gpu}; {os.cpu_count()} CPU cores; Python {platform.python_version()}, torch "
        f"{torch.__version__}{cuda}, triton {triton_version}"
    )


def step_table(rows: list[dict[str, str]]) -> list[str]:
    """A Markdown table of bench_step rows, one per backend (the GPU's columns where present)."""
    columns = ["backend", "pair", "batch", "image", "it_per_s", "images_per_s", "tflops"]
    columns += [c for c in ("peak_mb", "bf16_peak_fraction", "pct_ref_peak") if rows[0].get(c)]
    return [
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows),
    ]


def write_report(out: Path, mode: str, commit: str, total_s: float) -> int:
    """Write ``out/gpu_check.md``; return 0 when every step passed."""
    ran = read_csv(out / "steps.csv")
    order = ", ".join(s["id"] for s in ran)
    steps = sorted(ran, key=lambda s: (int(s["id"].rstrip("ab")), s["id"]))
    results = summaries(out)
    environment = (
        last_match(out / "logs" / "1.log", r"^environment: ").removeprefix("environment: ")
        or "environment not recorded (step 1 did not get that far)"
    )
    lines = [
        f"# GPU check ({mode})",
        "",
        f"Commit {commit}; {environment}; {total_s:.0f} s in all; steps run in the order {order}.",
        "",
        "| step | what | status | seconds | limit s | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for s in steps:
        note = results.get(s["id"], "")
        if s["status"] != "PASS":
            note = f"exit {s['rc']}" + (f"; {note}" if note else "")
        note = note.replace("|", "\\|")
        lines.append(
            f"| {s['id']} | {s['name']} | {s['status']} | {s['seconds']} | {s['limit']} | {note} |"
        )
    rows = step_rows(out)
    if rows:
        lines += ["", "## One DDAD iteration (5 student steps + 1 generator step)", ""]
        lines += step_table(rows)
        log4 = out / "logs" / "4.log"
        for pattern in (
            r"^one iteration = ",
            r"^measured matmul: ",
            r"^measured copy bandwidth: ",
            r"^eager precision: ",
        ):
            found = last_match(log4, pattern)
            if found:
                lines += ["", found]
    variants = step_rows(out, "variants.csv")
    if variants:
        lines += ["", "## Replay (5 replayed student steps) and the teacher in fp32 (step 8)", ""]
        lines += step_table(variants)
    for title, path in (
        ("Fast vs eager parity", out / "parity" / "parity.md"),
        ("Top kernels", out / "top_kernels.md"),
    ):
        if path.exists():
            lines += ["", f"## {title}", "", path.read_text().strip()]
    failed = [s["id"] for s in steps if s["status"] != "PASS"]
    lines += [
        "",
        f"**{'FAIL: step(s) ' + ', '.join(failed) if failed else 'PASS: every step'}** "
        f"(logs: `gpu_check.log`, `logs/<step>.log`; rows: `results.csv`, `steps.csv`).",
    ]
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    return 1 if failed or not steps else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extension", help="the extension's kernels on a device, checked")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("pg", help="one-rank process-group probe (run under torchrun)")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("report", help="write OUT/gpu_check.md")
    p.add_argument("out", type=Path)
    p.add_argument("--mode", default="GPU")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.command == "extension":
        return check_extension(args.device)
    if args.command == "pg":
        return probe_process_group(args.device)
    return write_report(args.out, args.mode, args.commit, args.seconds)


if __name__ == "__main__":
    sys.exit(main())
