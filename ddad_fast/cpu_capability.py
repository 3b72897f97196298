"""``ATEN_CPU_CAPABILITY`` checked against the CPU before any op runs.

The variable picks the CPU kernels torch runs (``default``, ``avx2``, ``avx512``), and torch takes
its value on trust: on a CPU without AVX-512, ``ATEN_CPU_CAPABILITY=avx512`` runs AVX-512 kernels
and the process dies with an illegal instruction (SIGILL, no traceback, a core dump) at the first
vectorised op. Seen on an AMD EPYC with AVX2 only, where the tests' tolerances are checked under
each kernel set. The CLI and the test suite ask ``check_cpu_capability`` first and stop in one line.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch

from .errors import ConfigError

# What the CPU must have for each kernel set: torch's own cpuinfo queries (AVX-512 means F, BW, DQ
# and VL together, as torch's AVX-512 kernels need).
KERNEL_SETS: dict[str, Callable[[], bool]] = {
    "avx2": torch.cpu._is_avx2_supported,
    "avx512": torch.cpu._is_avx512_supported,
}


def check_cpu_capability(environ: Mapping[str, str] = os.environ) -> None:
    """Raise ConfigError when ``ATEN_CPU_CAPABILITY`` names a kernel set this CPU cannot run."""
    asked = environ.get("ATEN_CPU_CAPABILITY", "")
    supported = KERNEL_SETS.get(asked)
    if supported is None or supported():
        return
    usable = ", ".join(["default", *(name for name, ok in KERNEL_SETS.items() if ok())])
    raise ConfigError(
        f"ATEN_CPU_CAPABILITY={asked} asks for {asked.upper()} kernels this CPU does not have "
        f"(torch would die of an illegal instruction); unset it or use one of: {usable}"
    )
