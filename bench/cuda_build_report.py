"""The CUDA part of a built ``ddad_fast._C``, checked without a GPU (bench/check_cuda.sh).

Fails (exit 1) unless both L1 ops have a CUDA kernel registered, the .so holds sm_90 machine code
and no CUDA kernel uses local memory (a spill, or an array the compiler could not keep in
registers). Prints, and writes with --out, a Markdown table of every kernel's registers, stack
frame, local and shared memory as ``cuobjdump -res-usage`` reads them from the .so.

    python bench/cuda_build_report.py ddad_fast/_C.cpython-311-x86_64-linux-gnu.so --out k.md
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from check_report import finish_report
from kernel_resources import cubin_resources, fails_on_local_memory, markdown_table

L1_OPS = ("ddad::l1_discrepancy", "ddad::l1_discrepancy_backward")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("so", type=Path, help="the built ddad_fast._C shared library")
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()

    torch.ops.load_library(str(args.so))
    unregistered = [
        op for op in L1_OPS if not torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
    ]
    problems = [f"{op} has no CUDA kernel registered" for op in unregistered]
    kernels, archs = cubin_resources(args.so, os.environ.get("CUOBJDUMP", "cuobjdump"))
    if "sm_90" not in archs:
        problems.append(f"{args.so.name} holds no sm_90 machine code (it holds: {archs or 'none'})")
    problems += fails_on_local_memory(kernels)

    registered = ", ".join(op for op in L1_OPS if op not in unregistered) or "no L1 op"
    lines = [
        f"CUDA kernels of `{args.so.name}` (torch {torch.__version__}, machine code for "
        f"{', '.join(archs)}; CUDA kernels registered for {registered})",
        "",
        *markdown_table(kernels),
    ]
    return finish_report(lines, args.out, problems)


if __name__ == "__main__":
    sys.exit(main())
