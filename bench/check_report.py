"""The end of every check-cuda report (bench/check_cuda.sh): its Markdown printed and written, its
problems said one line each, and the exit status."""

from __future__ import annotations

import sys
from pathlib import Path


def finish_report(lines: list[str], out: Path | None, problems: list[str]) -> int:
    """Prints ``lines`` as Markdown (also into ``out`` when given), each problem on stderr as
    ``check-cuda: ...``; returns the exit status: 1 when there is a problem, else 0."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
    for problem in problems:
        print(f"check-cuda: {problem}", file=sys.stderr)
    return 1 if problems else 0
