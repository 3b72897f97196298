"""Every Triton bn_stats kernel variant the launcher picks for a ResNet-34's BN inputs, compiled
ahead of time for sm_90 without a GPU (bench/check_cuda.sh runs it under two triton versions).

The launcher's own code (``ddad_fast.kernels.bn_stats.bn_stats_forward`` / ``_backward``) runs on
CPU tensors of each BN input's shape, dtype and memory format, with the device taken as an H200
(132 SMs) and each kernel launch replaced by triton's ``warmup`` (compile, no launch) for
``GPUTarget("cuda", 90, 32)``, so the variants are exactly those a GPU run would compile. Fails
(exit 1) on any variant with local memory (a spill); prints, and writes with --out, the table.

    python bench/triton_aot_report.py --batch 256 --image-size 32 --out triton.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import triton
from check_report import finish_report
from ddad_fast.kernels import bn_stats as kernels
from kernel_resources import cubin_resources, fails_on_local_memory, markdown_table
from torch import nn
from triton.backends.compiler import GPUTarget

from ddad_fast.models import build_model

H200_SMS = 132
SM90 = GPUTarget("cuda", 90, 32)
SM90_ARCH = "sm_90a"  # what triton compiles SM90 to: Hopper's arch-specific code


class AheadOfTimeDriver:
    """The few driver calls triton's launch path makes before compiling: device 0, stream 0 and
    an sm_90 target. Installed with ``triton.runtime.driver.set_active``; launches nothing."""

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int) -> int:
        return 0

    def get_current_target(self) -> GPUTarget:
        return SM90


class CompileInsteadOfLaunch:
    """Stands in for ``torch.library.wrap_triton`` in the launcher: ``wrap(kernel)[grid](*args)``
    compiles the kernel for the arguments' specialisation and records it, launching nothing."""

    def __init__(self) -> None:
        self.compiled: dict[int, tuple[dict, object]] = {}  # id -> (constexprs, compiled kernel)
        self.calls: list[int] = []  # compiled ids, one per launch

    def __call__(self, kernel) -> Callable:
        def at_grid(grid):
            def launch(*args, **constexprs):
                compiled = kernel.warmup(*args, grid=grid, **constexprs)
                self.compiled.setdefault(id(compiled), (constexprs, compiled))
                self.calls.append(id(compiled))

            return launch

        return _Subscriptable(at_grid)


class _Subscriptable:
    def __init__(self, at_grid: Callable) -> None:
        self._at_grid = at_grid

    def __getitem__(self, grid) -> Callable:
        return self._at_grid(grid)


def as_h200() -> None:
    """Makes the launcher size its grids for an H200 (132 SMs) whatever the device."""
    kernels._programs_wanted = lambda device: kernels.PROGRAMS_PER_SM * H200_SMS


def bn_input_shapes(model_name: str, batch: int, image_size: int) -> list[tuple[int, ...]]:
    """The (N, C, H, W) input of every BatchNorm2d of ``model_name``, in forward order."""
    with torch.device("meta"):
        model = build_model(model_name, num_classes=10, in_channels=3)
        shapes: list[tuple[int, ...]] = []
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.register_forward_pre_hook(lambda _, inp: shapes.append(tuple(inp[0].shape)))
        model(torch.empty(batch, 3, image_size, image_size))
    return shapes


def compile_variants(shapes, dtypes, formats) -> tuple[CompileInsteadOfLaunch, dict[int, Counter]]:
    """Runs the launcher's forward and backward for every BN input x dtype x memory format.
    Returns the recorder and, per compiled variant, how many launches of each "dtype format"
    picked it."""
    recorder = CompileInsteadOfLaunch()
    kernels.wrap_triton = recorder
    as_h200()
    triton.runtime.driver.set_active(AheadOfTimeDriver())
    used_by: dict[int, Counter] = {}
    for dtype in dtypes:
        for fmt_name, fmt in formats.items():
            for shape in shapes:
                x = torch.empty(shape, dtype=dtype).to(memory_format=fmt)
                rm = torch.zeros(shape[1])
                rv = torch.ones(shape[1])
                start = len(recorder.calls)
                _, mean, var, dist = kernels.bn_stats_forward(x, rm, rv)
                kernels.bn_stats_backward(torch.ones(()), x, mean, var, dist, rm, rv)
                for key in recorder.calls[start:]:
                    dtype_name = str(dtype).removeprefix("torch.")
                    used_by.setdefault(key, Counter())[f"{dtype_name} {fmt_name}"] += 1
    return recorder, used_by


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet34")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()

    shapes = bn_input_shapes(args.model, args.batch, args.image_size)
    formats = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}
    recorder, used_by = compile_variants(shapes, (torch.float32, torch.bfloat16), formats)

    rows, extra = [], {"blocks": [], "warps": [], "picked for": []}
    with tempfile.TemporaryDirectory() as tmp:
        cuobjdump = os.environ.get("CUOBJDUMP", "cuobjdump")
        for i, (key, (constexprs, compiled)) in enumerate(recorder.compiled.items()):
            cubin = Path(tmp, f"{i}.{SM90_ARCH}.cubin")
            cubin.write_bytes(compiled.asm["cubin"])
            (kernel,), _ = cubin_resources(cubin, cuobjdump)
            rows.append(kernel)
            blocks = {k: v for k, v in constexprs.items() if k.startswith("BLOCK_")}
            extra["blocks"].append(" ".join(f"{k}={v}" for k, v in blocks.items()))
            extra["warps"].append(str(compiled.metadata.num_warps))
            extra["picked for"].append(
                ", ".join(f"{u} x{n}" for u, n in sorted(used_by[key].items()))
            )
    problems = fails_on_local_memory(rows)
    lines = [
        f"Triton {triton.__version__}, sm_90 ahead of time: the bn_stats kernels for the "
        f"{len(shapes)} BN inputs of {args.model} at batch {args.batch}, "
        f"{args.image_size}x{args.image_size} ({len(set(shapes))} distinct shapes; fp32 and bf16, "
        f"NCHW and channels_last; {H200_SMS} SMs): {len(rows)} variants, "
        f"{len(recorder.calls)} launches",
        "",
        *markdown_table(rows, extra),
    ]
    return finish_report(lines, args.out, problems)


if __name__ == "__main__":
    sys.exit(main())
