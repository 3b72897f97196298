"""Registers and memory of compiled GPU kernels, read by ``cuobjdump`` (no GPU needed).

Shared by the CUDA-extension and the Triton ahead-of-time reports of bench/check_cuda.sh. A
kernel's STACK is its per-thread stack frame and LOCAL its other local memory: where ptxas spills
registers (``-Xptxas -v`` says "N bytes spill stores"), the spilled bytes live in that frame, so a
non-zero STACK or LOCAL in a kernel with no local arrays is a spill.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_FUNCTION = re.compile(r"^\s*Function (\S+):\s*$")
_USAGE = re.compile(r"(\w+(?:\[\d+\])?):(\d+)")
_ELF = re.compile(r"\.(sm_\d+a?)\.cubin$")


@dataclass(frozen=True)
class KernelResources:
    """One kernel's resources: registers per thread, stack and local bytes per thread, static
    shared bytes per block, as the machine code records them."""

    name: str
    arch: str
    registers: int
    stack: int
    local: int
    shared: int


def _demangle(names: list[str]) -> list[str]:
    """C++ names demangled (by c++filt, where it exists), anonymous namespaces dropped."""
    try:
        out = subprocess.run(
            ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names
    return [re.sub(r"^void |\(anonymous namespace\)::|\(.*\)$", "", n) for n in out]


def cubin_resources(path: Path, cuobjdump: str) -> tuple[list[KernelResources], list[str]]:
    """(every kernel's resources, the sm_* architectures with machine code) of a .so or .cubin."""
    usage = subprocess.run(
        [cuobjdump, "-res-usage", str(path)], capture_output=True, text=True, check=True
    ).stdout
    rows: list[tuple[str, str, dict[str, int]]] = []
    arch, name = "", None
    for line in usage.splitlines():
        if line.startswith("arch = "):
            arch = line.split("=", 1)[1].strip()
        elif m := _FUNCTION.match(line):
            name = m.group(1)
        elif name is not None and "REG:" in line:
            rows.append((name, arch, {k: int(v) for k, v in _USAGE.findall(line)}))
            name = None
    names = _demangle([r[0] for r in rows])
    kernels = [
        KernelResources(n, a or _arch_of_cubin(path), u["REG"], u["STACK"], u["LOCAL"], u["SHARED"])
        for n, (_, a, u) in zip(names, rows, strict=True)
    ]
    if path.suffix == ".cubin":
        return kernels, [_arch_of_cubin(path)]
    listing = subprocess.run(
        [cuobjdump, "-lelf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    archs = sorted({m.group(1) for line in listing.splitlines() if (m := _ELF.search(line))})
    return kernels, archs


def _arch_of_cubin(path: Path) -> str:
    """A bare cubin's architecture, from its name (``*.sm_90a.cubin``), else unknown."""
    m = _ELF.search(path.name)
    return m.group(1) if m else "?"


def fails_on_local_memory(kernels: list[KernelResources]) -> list[str]:
    """One problem line per kernel with a non-zero stack frame or local memory."""
    return [
        f"{k.name} ({k.arch}) uses local memory: stack {k.stack} B, local {k.local} B per thread"
        for k in kernels
        if k.stack or k.local
    ]


def markdown_table(kernels: list[KernelResources], extra: dict[str, list[str]] | None = None):
    """Markdown lines: one row per kernel; ``extra`` adds columns (name -> one cell per kernel)."""
    extra = extra or {}
    head = ["kernel", *extra, "arch", "registers", "stack B", "local B", "shared B"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, k in enumerate(kernels):
        cells = [f"`{k.name}`", *(col[i] for col in extra.values())]
        cells += [k.arch, str(k.registers), str(k.stack), str(k.local), str(k.shared)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
